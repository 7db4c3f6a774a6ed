"""The STiCA model: two visual views and audio → full-clip and feature-crop embeddings.

Per sample, `sample_keys[i]` (derived by the trainer from the global sample index) seeds
every random choice of that sample — crop positions per view and dropout masks — so the
outputs do not depend on how the global batch is split over devices.
"""

from typing import Any

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from stica_jax import crops as crops_lib
from stica_jax.models.audio_resnet import AudioResNet
from stica_jax.models.heads import ProjectionHead
from stica_jax.models.layers import Dtype, fold_keys
from stica_jax.models.temporal_pooling import make_temporal_pooling
from stica_jax.models.video_resnet import VideoResNet

# fold_in ids deriving per-purpose keys from a sample key.
_VIEW_CROPS = 100  # + view index
_VIEW_DROPOUT = 200  # + view index
_AUDIO_DROPOUT = 300
_CROP_DROPOUT = 400  # + view index, then crop family/kind/index


# float64 is for numerical tests only (needs jax_enable_x64).
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


class STiCA(nnx.Module):
    """R(2+1)D video backbone + temporal pooling + head, ResNet-9 audio backbone + avg + head."""

    def __init__(
        self,
        *,
        video_widths=(64, 128, 256, 512),
        video_depths=(2, 2, 2, 2),
        audio_widths=(64, 128, 256, 512),
        pooling: str = "transformer",
        transformer_layers: int = 2,
        transformer_heads: int = 4,
        transformer_mlp_width: int = 2048,
        transformer_max_len: int = 64,
        head_hidden: int = 512,
        embed_dim: int = 256,
        head_dropout: float = 0.3,
        crops: crops_lib.CropConfig | None = crops_lib.CropConfig(),
        axis_name: str | None = None,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if crops is not None:
            crops.validate()
        self.crop_config = crops
        kw = dict(axis_name=axis_name, dtype=dtype, rngs=rngs)
        self.video_backbone = VideoResNet(video_widths, video_depths, **kw)
        self.audio_backbone = AudioResNet(audio_widths, **kw)
        width = self.video_backbone.out_features
        self.video_pooling = make_temporal_pooling(
            pooling,
            width,
            num_layers=transformer_layers,
            num_heads=transformer_heads,
            mlp_width=transformer_mlp_width,
            max_len=transformer_max_len,
            dtype=dtype,
            rngs=rngs,
        )
        self.video_head = ProjectionHead(width, head_hidden, embed_dim, head_dropout, **kw)
        self.audio_head = ProjectionHead(
            self.audio_backbone.out_features, head_hidden, embed_dim, head_dropout, **kw
        )
        self.dtype = dtype

    # -- pieces, usable on their own (probes, heatmaps, export checks) --------------------

    def video_map(self, video: jax.Array) -> jax.Array:
        """video `[B, T, H, W, 3]` → pre-pool map `[B, T', H', W', C]`."""
        return self.video_backbone(video.astype(self.dtype))

    def embed_video_map(self, fmap: jax.Array, keys: jax.Array | None) -> jax.Array:
        """map `[N, t, h, w, C]` → spatial mean → temporal pooling → head → `[N, E]` unit f32."""
        tokens = jnp.mean(fmap, axis=(2, 3))
        return self.video_head(self.video_pooling(tokens), keys)

    def audio_map(self, audio: jax.Array) -> jax.Array:
        """audio `[B, F, T, 1]` → pre-pool map `[B, F', T', C]`."""
        return self.audio_backbone(audio.astype(self.dtype))

    def embed_audio_map(self, amap: jax.Array, keys: jax.Array | None) -> jax.Array:
        """audio map `[B, F', T', C]` → average pool → head → `[B, E]` unit f32."""
        return self.audio_head(jnp.mean(amap, axis=(1, 2)), keys)

    def embed_video(self, video: jax.Array, keys: jax.Array | None = None) -> jax.Array:
        """video `[B, T, H, W, 3]` → `[B, E]`."""
        return self.embed_video_map(self.video_map(video), keys)

    def embed_audio(self, audio: jax.Array, keys: jax.Array | None = None) -> jax.Array:
        """audio `[B, F, T, 1]` → `[B, E]`."""
        return self.embed_audio_map(self.audio_map(audio), keys)

    def _embed_crops(self, crops: jax.Array, keys: jax.Array) -> jax.Array:
        """crops `[B, n, t, h, w, C]` → `[B, n, E]`; crop j of sample i gets key fold(keys[i], j)."""
        b, n = crops.shape[:2]
        crop_keys = jax.vmap(lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(jnp.arange(n)))(
            keys
        )
        z = self.embed_video_map(
            rearrange(crops, "b n t h w c -> (b n) t h w c"), crop_keys.reshape(b * n)
        )
        return z.reshape(b, n, -1)

    # -- the full forward pass of pretraining -----------------------------------------------

    def __call__(
        self,
        video1: jax.Array,
        video2: jax.Array,
        audio: jax.Array,
        sample_keys: jax.Array,
        *,
        return_maps: bool = False,
    ) -> dict[str, Any]:
        """Embeddings for the STiCA loss.

        Args:
          video1, video2: `[B, T, H, W, 3]` two augmented views of the same clip.
          audio: `[B, F, T_a, 1]` log-mel spectrogram of the same time window.
          sample_keys: `[B]` typed PRNG keys, one per sample (from its global index).
          return_maps: also return the pre-pool maps (heatmaps, probes).
        Returns a dict:
          "video": `[2, B, E]` full-clip embeddings of the two views;
          "audio": `[B, E]`;
          "crops": `{family: {"large": [2, B, n_large, E], "small": [B, n_small, E]}}` —
            large crops of both views, small crops of view 2 only (the loss contrasts the
            small crops of view 2 with the large crops of view 1);
          "video_map": `[2, B, T', H', W', C]`, "audio_map": `[B, F', T', C]` if asked.
        """
        if video1.shape != video2.shape:
            raise ValueError(f"the two views differ in shape: {video1.shape} vs {video2.shape}")
        if video1.shape[0] != audio.shape[0] or sample_keys.shape != (video1.shape[0],):
            raise ValueError(
                f"batch sizes differ: video {video1.shape}, audio {audio.shape}, "
                f"sample_keys {sample_keys.shape}"
            )
        b = video1.shape[0]
        # One backbone pass over both views: BatchNorm sees 2B clips, like the official
        # code's per-view passes averaged (its BN saw each view's batch separately).
        fmaps = self.video_map(jnp.concatenate([video1, video2], axis=0))
        fmap1, fmap2 = fmaps[:b], fmaps[b:]
        view_keys = jnp.concatenate(
            [fold_keys(sample_keys, _VIEW_DROPOUT), fold_keys(sample_keys, _VIEW_DROPOUT + 1)]
        )
        z_video = self.embed_video_map(fmaps, view_keys).reshape(2, b, -1)
        amap = self.audio_map(audio)
        out: dict[str, Any] = {
            "video": z_video,
            "audio": self.embed_audio_map(amap, fold_keys(sample_keys, _AUDIO_DROPOUT)),
        }
        if self.crop_config is not None:
            crops = {}
            per_view = [
                crops_lib.feature_crops(
                    fm,
                    fold_keys(sample_keys, _VIEW_CROPS + v),
                    self.crop_config,
                    with_small=(v == 1),
                )
                for v, fm in enumerate((fmap1, fmap2))
            ]
            for family in self.crop_config.active_families():
                crops[family] = {}
                for kind in ("large", "small"):
                    views = [
                        (v, c[family][kind]) for v, c in enumerate(per_view) if kind in c[family]
                    ]
                    if not views:
                        continue
                    embedded = [
                        self._embed_crops(
                            c,
                            fold_keys(
                                sample_keys,
                                _CROP_DROPOUT + v,
                                crops_lib.FAMILIES.index(family),
                                0 if kind == "large" else 1,
                            ),
                        )
                        for v, c in views
                    ]
                    crops[family][kind] = embedded[0] if kind == "small" else jnp.stack(embedded)
            out["crops"] = crops
        if return_maps:
            out["video_map"] = fmaps.reshape(2, b, *fmaps.shape[1:])
            out["audio_map"] = amap
        return out


def crops_and_dtype(
    model_config: Any, crop_config: Any | None
) -> tuple[crops_lib.CropConfig | None, Any]:
    """(feature crops or None when `crop_config` is None or disabled, compute dtype) of a config."""
    crops = None
    if crop_config is not None and crop_config.get("enabled", True):
        crops = crops_lib.CropConfig.from_config(crop_config)
    if model_config.dtype not in DTYPES:
        raise ValueError(f"unknown model.dtype {model_config.dtype!r}; expected {list(DTYPES)}")
    return crops, DTYPES[model_config.dtype]


def build_model(
    model_config: Any, crop_config: Any | None, *, axis_name: str | None = None, rngs: nnx.Rngs
) -> STiCA:
    """A STiCA model from the `model` and `crops` sections of a config.

    `crop_config` with `enabled=False` (or None) builds the model without feature crops.
    """
    crops, dtype = crops_and_dtype(model_config, crop_config)
    t = model_config.transformer
    return STiCA(
        video_widths=tuple(model_config.video_widths),
        video_depths=tuple(model_config.video_depths),
        audio_widths=tuple(model_config.audio_widths),
        pooling=model_config.pooling,
        transformer_layers=t.num_layers,
        transformer_heads=t.num_heads,
        transformer_mlp_width=t.mlp_width,
        transformer_max_len=t.max_len,
        head_hidden=model_config.head_hidden,
        embed_dim=model_config.embed_dim,
        head_dropout=model_config.head_dropout,
        crops=crops,
        axis_name=axis_name,
        dtype=dtype,
        rngs=rngs,
    )
