"""Supervised video classifier: R(2+1)D backbone → spatial mean → temporal pooling → fc.

Used for supervised Kinetics-400 training (seed §7.3, Table 8) and fine-tuning. With `avg`
pooling it is exactly torchvision's `r2plus1d_18` (whose `fc` follows global average pooling).

Feature crops in supervised training (Table 8's "Fm-Crop ✓") are our reading of a one-line
description: each crop of the backbone map (cut by `stica_jax.crops`, the pretraining's
machinery and offset rule) goes through the same spatial mean, temporal pooling and `fc` as
the full map, and is classified against the clip's label (the loss is in
`stica_jax.losses.classification_loss`). Crops are a training-time augmentation only: in
inference mode the classifier sees the full map.

Per sample, `sample_keys[i]` (from the global sample index) seeds its crop positions and
dropout masks, so the outputs do not depend on how the batch is split over devices.
"""

from typing import Any

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from stica_jax import crops as crops_lib
from stica_jax.models.layers import Dtype, SampleDropout, fold_keys, linear
from stica_jax.models.stica import crops_and_dtype
from stica_jax.models.temporal_pooling import make_temporal_pooling
from stica_jax.models.video_resnet import VideoResNet

# fold_in ids deriving per-purpose keys from a sample key.
_CROPS = 100
_DROPOUT = 200
_CROP_DROPOUT = 300  # then crop family, large/small, crop index


class VideoClassifier(nnx.Module):
    """`video_backbone`, `video_pooling` and a `fc` layer of `num_classes` logits."""

    def __init__(
        self,
        num_classes: int,
        *,
        video_widths=(64, 128, 256, 512),
        video_depths=(2, 2, 2, 2),
        pooling: str = "avg",
        transformer: Any = None,
        dropout: float = 0.0,
        crops: crops_lib.CropConfig | None = None,
        axis_name: str | None = None,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if crops is not None:
            crops.validate()
        self.crop_config = crops
        t = dict(transformer or {})
        self.video_backbone = VideoResNet(
            video_widths, video_depths, axis_name=axis_name, dtype=dtype, rngs=rngs
        )
        width = self.video_backbone.out_features
        self.video_pooling = make_temporal_pooling(pooling, width, dtype=dtype, rngs=rngs, **t)
        # Per-sample masks (not nnx.Dropout): the loss must not depend on the device count.
        self.dropout = SampleDropout(dropout) if dropout else None
        self.fc = linear(width, num_classes, dtype=dtype, rngs=rngs)
        self.dtype = dtype

    def video_map(self, video: jax.Array) -> jax.Array:
        """video `[B, T, H, W, 3]` → pre-pool map `[B, T', H', W', C]`."""
        return self.video_backbone(video.astype(self.dtype))

    def pool_map(self, fmap: jax.Array) -> jax.Array:
        """map `[N, t, h, w, C]` (full or a crop) → spatial mean → temporal pooling → `[N, C]`."""
        return self.video_pooling(jnp.mean(fmap, axis=(2, 3)))

    def classify_map(self, fmap: jax.Array, keys: jax.Array | None = None) -> jax.Array:
        """map `[N, t, h, w, C]` → logits `[N, num_classes]` (f32); keys `[N]` for dropout."""
        x = self.pool_map(fmap)
        if self.dropout is not None:
            x = self.dropout(x, keys)
        # At least float32 (bf16 compute → f32 logits; float64 tests keep float64).
        return self.fc(x).astype(jnp.promote_types(self.dtype, jnp.float32))

    def features(self, video: jax.Array) -> jax.Array:
        """video `[B, T, H, W, 3]` → pooled features `[B, C]`."""
        return self.pool_map(self.video_map(video))

    def __call__(self, video: jax.Array, keys: jax.Array | None = None) -> jax.Array:
        """video `[B, T, H, W, 3]` → logits `[B, num_classes]` (float32).

        keys: `[B]` per-sample dropout keys, needed only in training mode with dropout.
        """
        return self.classify_map(self.video_map(video), keys)

    def training_outputs(self, video: jax.Array, sample_keys: jax.Array) -> dict[str, jax.Array]:
        """Logits of the full clip and of its feature crops, for the supervised loss.

        Args:
          video: `[B, T, H, W, 3]`; sample_keys: `[B]` typed keys, one per sample (global index).
        Returns:
          "logits": `[B, K]`; with crops configured also "crop_logits": `[B, n, K]`, the n crops
          of every active family, large then small (family order of `crops.FAMILIES`).
        """
        if sample_keys.shape != video.shape[:1]:
            raise ValueError(
                f"batch sizes differ: video {video.shape}, sample_keys {sample_keys.shape}"
            )
        fmap = self.video_map(video)
        out = {"logits": self.classify_map(fmap, fold_keys(sample_keys, _DROPOUT))}
        if self.crop_config is None:
            return out
        crop_sets = crops_lib.feature_crops(fmap, fold_keys(sample_keys, _CROPS), self.crop_config)
        logits = []
        for family, kinds in crop_sets.items():
            for kind, crops in kinds.items():
                b, n = crops.shape[:2]
                keys = fold_keys(
                    sample_keys,
                    _CROP_DROPOUT,
                    crops_lib.FAMILIES.index(family),
                    0 if kind == "large" else 1,
                )
                crop_keys = jax.vmap(
                    lambda k, n=n: jax.vmap(lambda j: jax.random.fold_in(k, j))(jnp.arange(n))
                )(keys)
                flat = self.classify_map(
                    rearrange(crops, "b n t h w c -> (b n) t h w c"), crop_keys.reshape(b * n)
                )
                logits.append(flat.reshape(b, n, -1))
        out["crop_logits"] = jnp.concatenate(logits, axis=1)
        return out


def build_classifier(
    model_config: Any,
    supervised_config: Any,
    crop_config: Any | None,
    *,
    axis_name: str | None = None,
    rngs: nnx.Rngs,
) -> VideoClassifier:
    """A `VideoClassifier` from the `model`, `supervised` and `crops` sections of a config.

    The backbone and temporal pooling follow `model` (as in pretraining); `supervised` gives
    `num_classes` and `dropout`; `crops` with `enabled=False` (or None) trains without crops.
    """
    crops, dtype = crops_and_dtype(model_config, crop_config)
    t = model_config.transformer
    return VideoClassifier(
        int(supervised_config.num_classes),
        video_widths=tuple(model_config.video_widths),
        video_depths=tuple(model_config.video_depths),
        pooling=model_config.pooling,
        transformer=dict(
            num_layers=t.num_layers, num_heads=t.num_heads, mlp_width=t.mlp_width, max_len=t.max_len
        ),
        dropout=float(supervised_config.dropout),
        crops=crops,
        axis_name=axis_name,
        dtype=dtype,
        rngs=rngs,
    )
