"""A trained model from a workdir: the run's config, the model it trained, its checkpoint.

This stands above both `checkpointing` (how a workdir's files are written and read) and
`train` (what model and state a config builds), so that neither of those imports the other.
Importing it imports the trainer, and with it TensorFlow (for `clu`'s writers): callers that
must not load TensorFlow before torch import it late.
"""

import jax
import ml_collections
from flax import nnx

from stica_jax import checkpointing, train


def restore_model(
    workdir: str, step: int | None = None, *, compute_dtype: str | None = None
) -> tuple[ml_collections.ConfigDict, nnx.Module, int]:
    """(config, model with the checkpoint's parameters and BatchNorm statistics, step).

    `step` None restores the latest complete checkpoint. The model is the one `config.mode`
    trains (a `STiCA`, or a `VideoClassifier` for "supervised"), in eval mode, built without
    a mesh axis (for inference and export). `compute_dtype` ("float32", "bfloat16") replaces
    the run's `model.dtype` in the model and the returned config: the parameters are float32
    whatever the compute dtype, so an evaluation chooses its own precision.
    """
    config = checkpointing.load_config(workdir)
    if compute_dtype is not None:
        with config.model.unlocked():
            config.model.dtype = compute_dtype
    model, _, abstract_state = train.create_train_state(config, axis_name=None, abstract=True)
    # Restore onto this process's first device, whatever topology saved the checkpoint (a pod
    # slice, two hosts...): without a target sharding orbax insists on the saving devices.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract_state
    )
    manager = checkpointing.make_manager(workdir, async_save=False)
    state, step = checkpointing.restore_state(manager, abstract_state, step)
    graphdef = nnx.graphdef(model)
    model = nnx.merge(graphdef, state.params, state.batch_stats)
    model.eval()
    return config, model, int(step)
