"""The STiCA networks: R(2+1)D-18, ResNet-9 audio, temporal pooling, heads, the wrapper."""

from typing import Any

from flax import nnx

from stica_jax.models.classifier import VideoClassifier, build_classifier
from stica_jax.models.layers import configure_batch_norm, configure_convolutions
from stica_jax.models.stica import STiCA, build_model

__all__ = ["STiCA", "VideoClassifier", "build_classifier", "build_model", "build_train_model"]


def build_train_model(
    config: Any, *, axis_name: str | None = None, rngs: nnx.Rngs
) -> STiCA | VideoClassifier:
    """The model `config.mode` trains: a STiCA ("pretrain") or a VideoClassifier ("supervised"),
    with the layer options of `config.performance` (BatchNorm statistics, channel padding)."""
    if config.get("mode", "pretrain") == "supervised":
        model = build_classifier(
            config.model, config.supervised, config.get("crops"), axis_name=axis_name, rngs=rngs
        )
    else:
        model = build_model(config.model, config.get("crops"), axis_name=axis_name, rngs=rngs)
    p = config.get("performance")  # absent from the config.json of older runs: the defaults
    if p is not None:
        configure_batch_norm(model, one_pass=p.bn_one_pass, sync=p.bn_sync)
        configure_convolutions(model, channel_multiple=p.conv_channel_multiple)
    return model
