"""The STiCA networks: R(2+1)D-18, ResNet-9 audio, temporal pooling, heads, the wrapper."""

from stica_jax.models.stica import STiCA, build_model

__all__ = ["STiCA", "build_model"]
