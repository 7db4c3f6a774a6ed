"""Supervised video classifier: R(2+1)D backbone → spatial mean → temporal pooling → fc.

Used for supervised Kinetics-400 training (seed Table 8) and fine-tuning. With `avg` pooling
it is exactly torchvision's `r2plus1d_18` (whose `fc` follows global average pooling).
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from stica_jax.models.layers import Dtype, linear
from stica_jax.models.temporal_pooling import make_temporal_pooling
from stica_jax.models.video_resnet import VideoResNet


class VideoClassifier(nnx.Module):
    """`video_backbone`, `video_pooling` and a `fc` layer of `num_classes` logits."""

    def __init__(self, num_classes: int, *, video_widths=(64, 128, 256, 512),
                 video_depths=(2, 2, 2, 2), pooling: str = "avg", transformer: Any = None,
                 dropout: float = 0.0, axis_name: str | None = None,
                 dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
        t = dict(transformer or {})
        self.video_backbone = VideoResNet(video_widths, video_depths, axis_name=axis_name,
                                          dtype=dtype, rngs=rngs)
        width = self.video_backbone.out_features
        self.video_pooling = make_temporal_pooling(pooling, width, dtype=dtype, rngs=rngs, **t)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None
        self.fc = linear(width, num_classes, dtype=dtype, rngs=rngs)
        self.dtype = dtype

    def features(self, video: jax.Array) -> jax.Array:
        """video `[B, T, H, W, 3]` → pooled features `[B, C]`."""
        fmap = self.video_backbone(video.astype(self.dtype))
        return self.video_pooling(jnp.mean(fmap, axis=(2, 3)))

    def __call__(self, video: jax.Array) -> jax.Array:
        """video `[B, T, H, W, 3]` → logits `[B, num_classes]` (float32)."""
        x = self.features(video)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc(x).astype(jnp.float32)
