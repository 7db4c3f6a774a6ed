"""A trained model from a workdir: the run's config, the model it trained, its checkpoint.

It builds the model the run's config describes (`models.build_train_model`, shapes only) and
restores its parameters and BatchNorm statistics from the newest (or a given) checkpoint,
leaving the optimizer state on disk: restoring a model builds no optimizer, so evaluation and
export import nothing of the trainer (`tests/test_import_graph.py` holds them to it).
"""

import jax
import ml_collections
from flax import nnx

from stica_jax import checkpointing
from stica_jax.models import build_train_model


def restore_model(
    workdir: str, step: int | None = None, *, compute_dtype: str | None = None
) -> tuple[ml_collections.ConfigDict, nnx.Module, int]:
    """(config, model with the checkpoint's parameters and BatchNorm statistics, step).

    `step` None restores the newest checkpoint that restores. The model is the one
    `config.mode` trains (a `STiCA`, or a `VideoClassifier` for "supervised"), in eval mode,
    built without a mesh axis (for inference and export). `compute_dtype` ("float32",
    "bfloat16") replaces the run's `model.dtype` in the model and the returned config: the
    parameters are float32 whatever the compute dtype, so an evaluation chooses its own
    precision.
    """
    config = checkpointing.load_config(workdir)
    if compute_dtype is not None:
        with config.model.unlocked():
            config.model.dtype = compute_dtype
    model = nnx.eval_shape(
        lambda: build_train_model(config, axis_name=None, rngs=nnx.Rngs(config.seed))
    )
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    # Restore onto this process's first device, whatever topology saved the checkpoint (a pod
    # slice, two hosts...): without a target sharding orbax insists on the saving devices.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
        {"params": params, "batch_stats": batch_stats},
    )
    manager = checkpointing.make_manager(workdir, async_save=False)
    restored, step = checkpointing.restore_state(manager, abstract, step, partial=True)
    model = nnx.merge(graphdef, restored["params"], restored["batch_stats"])
    model.eval()
    return config, model, int(step)
