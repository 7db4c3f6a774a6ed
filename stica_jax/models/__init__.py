"""The STiCA networks: R(2+1)D-18, ResNet-9 audio, temporal pooling, heads, the wrapper."""

from typing import Any

from flax import nnx

from stica_jax.models.classifier import VideoClassifier, build_classifier
from stica_jax.models.stica import STiCA, build_model

__all__ = ["STiCA", "VideoClassifier", "build_classifier", "build_model", "build_train_model"]


def build_train_model(
    config: Any, *, axis_name: str | None = None, rngs: nnx.Rngs
) -> STiCA | VideoClassifier:
    """The model `config.mode` trains: a STiCA ("pretrain") or a VideoClassifier ("supervised")."""
    if config.get("mode", "pretrain") == "supervised":
        return build_classifier(
            config.model, config.supervised, config.get("crops"), axis_name=axis_name, rngs=rngs
        )
    return build_model(config.model, config.get("crops"), axis_name=axis_name, rngs=rngs)
