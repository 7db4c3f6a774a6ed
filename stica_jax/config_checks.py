"""Config checks that need neither TensorFlow nor the trainer: `validate_config`.

`python -m stica_jax.main` runs them before it loads the trainer, the input pipeline and
TensorFlow, so a value that cannot run is one line within seconds; `train.train_and_evaluate`
runs them again for callers of the library.
"""

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from data_pipeline.audio_frontends import check_audio_frontend
from stica_jax.crops import FAMILIES, CropConfig
from stica_jax.errors import ConfigError
from stica_jax.losses import CROP_PAIRINGS, num_crop_terms
from stica_jax.models.layers import BATCH_NORM_SYNC
from stica_jax.models.stica import DTYPES
from stica_jax.models.temporal_pooling import POOLING_KINDS
from stica_jax.models.video_resnet import VideoResNet
from stica_jax.shapes import input_shapes


def video_map_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(T', H', W') of the visual map for the configured input, from an abstract trace."""
    model = nnx.eval_shape(
        lambda: VideoResNet(config.model.video_widths, config.model.video_depths, rngs=nnx.Rngs(0))
    )
    video_shape, _ = input_shapes(config.input)
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(video_shape, jnp.float32))
    return tuple(out.shape[1:4])


MODES = ("pretrain", "supervised")
# Online evaluators of each mode: frozen-feature probes of a pretrained model, or the top-1
# of the trained classifier itself.
EVAL_METHODS = {"pretrain": ("linear_probe", "knn", "none"), "supervised": ("classifier", "none")}


def validate_config(
    config: ml_collections.ConfigDict, *, num_devices: int, num_processes: int
) -> None:
    """Raise `ConfigError` with one clear line for each way the config cannot run."""
    b = config.global_batch_size
    if b % num_devices:
        raise ConfigError(
            f"global_batch_size={b} is not divisible by the {num_devices} devices "
            f"of the mesh; use a multiple of {num_devices}"
        )
    if b % num_processes:
        raise ConfigError(f"global_batch_size={b} is not divisible by {num_processes} hosts")
    if config.mode not in MODES:
        raise ConfigError(f"unknown mode {config.mode!r}; expected 'pretrain' or 'supervised'")
    if config.mode == "supervised":
        if "supervised" not in config:
            raise ConfigError(
                "mode 'supervised' needs a config.supervised section (num_classes, "
                "dropout, crop_loss_weight); see configs/supervised_k400.py"
            )
        sup = config.supervised
        if sup.num_classes < 0:
            raise ConfigError(
                f"supervised.num_classes={sup.num_classes} must be >= 0 "
                "(0 = the dataset's label count)"
            )
        if not 0.0 <= sup.crop_loss_weight <= 1.0:
            raise ConfigError(
                f"supervised.crop_loss_weight={sup.crop_loss_weight} must be in [0, 1]"
            )
        if not 0.0 <= sup.dropout < 1.0:
            raise ConfigError(f"supervised.dropout={sup.dropout} must be in [0, 1)")
    if config.model.pooling not in POOLING_KINDS:
        raise ConfigError(
            f"unknown model.pooling {config.model.pooling!r}; expected one of {list(POOLING_KINDS)}"
        )
    p = config.performance
    if p.bn_sync not in BATCH_NORM_SYNC:
        raise ConfigError(
            f"unknown performance.bn_sync {p.bn_sync!r}; expected one of {list(BATCH_NORM_SYNC)}"
        )
    if p.conv_channel_multiple < 0:
        raise ConfigError(
            f"performance.conv_channel_multiple={p.conv_channel_multiple} must be >= 0"
        )
    if config.model.dtype not in DTYPES:
        raise ConfigError(f"unknown model.dtype {config.model.dtype!r}; expected {list(DTYPES)}")
    methods = EVAL_METHODS[config.mode]
    if config.eval.method not in methods:
        raise ConfigError(
            f"unknown eval.method {config.eval.method!r} for mode "
            f"{config.mode!r}; expected one of {list(methods)}"
        )
    if config.eval.method != "none" and config.eval.batch_size % num_devices:
        raise ConfigError(
            f"eval.batch_size={config.eval.batch_size} is not divisible by the "
            f"{num_devices} devices"
        )
    check_audio_frontend(config.input.get("audio_frontend", "stica"), ConfigError)
    if config.mode == "pretrain" and config.loss.crop_pairs not in CROP_PAIRINGS:
        raise ConfigError(
            f"unknown loss.crop_pairs {config.loss.crop_pairs!r}; expected one of "
            f"{list(CROP_PAIRINGS)}"
        )
    if config.crops.enabled:
        crops = CropConfig.from_config(config.crops)
        try:
            crops.validate(video_map_shape(config))
        except ValueError as e:
            video_shape, _ = input_shapes(config.input)
            raise ConfigError(f"crops do not fit the input {video_shape[1:4]}: {e}") from None
        pairs = config.loss.crop_pairs
        if config.mode == "pretrain" and not any(
            num_crop_terms(*crops.counts(f), pairs) for f in FAMILIES
        ):
            raise ConfigError(
                f"loss.crop_pairs={pairs!r} contrasts none of these crops: it needs a small "
                "crop or two large ones in a family; add crops or set crops.enabled=False"
            )
    if b <= 0:
        raise ConfigError(f"global_batch_size={b} must be positive")
    for field in ("checkpoint_every_steps", "log_every_steps", "keep_checkpoints"):
        if config[field] < 1:
            raise ConfigError(f"{field}={config[field]} must be at least 1")
    # 0 trains nothing on purpose (the data is prepared and the initialisation evaluated);
    # a negative count would do the same silently.
    if not config.num_epochs >= 0:
        raise ConfigError(f"num_epochs={config.num_epochs} must be 0 or more")
