"""Feature crops ("Space-Time Crop"): random crops of the pre-pool visual map.

Spatial crops keep every time step and cut an `s×s` window; temporal crops keep the whole
`H×W` and cut `l` consecutive time steps. Offsets are uniform over ALL valid positions
`0..size-w` inclusive (the official code's exclusive numpy bound never reached the last
position, and always put 6×6 crops of a 7×7 map at [0:6, 0:6]). Offsets are drawn per sample
from that sample's key, which the caller derives from the global sample index and the view,
so crops do not depend on how the batch is split over devices. Crops are cut with
`jax.lax.dynamic_slice`, vmapped over the batch and the crops, so they run inside jit.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

# Families of crops; `fold_in` ids for their keys.
SPACE, TIME = "space", "time"
FAMILIES = (SPACE, TIME)
_FAMILY_ID = {SPACE: 0, TIME: 1}
_SIZE_ID = {"large": 0, "small": 1}


@dataclasses.dataclass(frozen=True)
class CropConfig:
    """Sizes and counts of the feature crops.

    `space_*` sizes are the side of square spatial crops; `time_*` sizes are numbers of
    time steps of the map. A count of 0 disables that kind. SOTA for 60 frames (T'=8):
    space 2×6² + 4×4², time 2×6 + 1×4 (the paper's 2×3 + 1×2 is for T'=4).
    """

    space_large: int = 6
    n_space_large: int = 2
    space_small: int = 4
    n_space_small: int = 4
    time_large: int = 6
    n_time_large: int = 2
    time_small: int = 4
    n_time_small: int = 1

    @classmethod
    def from_config(cls, cfg: Any) -> "CropConfig":
        """From a mapping (e.g. an ml_collections ConfigDict) with the same field names."""
        return cls(**{f.name: int(cfg[f.name]) for f in dataclasses.fields(cls)})

    def counts(self, family: str) -> tuple[int, int]:
        """(n_large, n_small) of a family."""
        return getattr(self, f"n_{family}_large"), getattr(self, f"n_{family}_small")

    def sizes(self, family: str) -> tuple[int, int]:
        """(large size, small size) of a family."""
        return getattr(self, f"{family}_large"), getattr(self, f"{family}_small")

    def active_families(self) -> tuple[str, ...]:
        return tuple(f for f in FAMILIES if sum(self.counts(f)) > 0)

    def validate(self, map_shape: tuple[int, int, int] | None = None) -> None:
        """Raise ValueError naming the problem; `map_shape` is the map's (T', H', W')."""
        if not self.active_families():
            raise ValueError(
                "feature crops are enabled but every crop count is 0; "
                "disable crops (crops.enabled=False) or set a count > 0"
            )
        for family in FAMILIES:
            (n_large, n_small), (large, small) = self.counts(family), self.sizes(family)
            if min(n_large, n_small) < 0:
                raise ValueError(f"negative {family} crop count: {n_large}, {n_small}")
            if n_small > 0 and n_large == 0:
                raise ValueError(
                    f"{n_small} small {family} crops need at least one large "
                    f"{family} crop: small crops are contrasted with large ones"
                )
            for n, size, kind in ((n_large, large, "large"), (n_small, small, "small")):
                if n > 0 and size < 1:
                    raise ValueError(f"{family} {kind} crop size must be >= 1, got {size}")
        if map_shape is None:
            return
        t, h, w = map_shape
        for n, size, kind in (
            (self.n_space_large, self.space_large, "large"),
            (self.n_space_small, self.space_small, "small"),
        ):
            if n > 0 and (size > h or size > w):
                raise ValueError(
                    f"{kind} spatial crop {size}×{size} is larger than the {h}×{w} feature map "
                    f"it is cut from; use a larger input or smaller crops"
                )
        for n, size, kind in (
            (self.n_time_large, self.time_large, "large"),
            (self.n_time_small, self.time_small, "small"),
        ):
            if n > 0 and size > t:
                raise ValueError(
                    f"{kind} temporal crop of {size} steps is longer than the feature map's "
                    f"T'={t}; use more frames or shorter temporal crops"
                )


def crop_key(sample_key: jax.Array, family: str, size: str) -> jax.Array:
    """The key of one (family, large/small) crop set of one sample and view."""
    return jax.random.fold_in(jax.random.fold_in(sample_key, _FAMILY_ID[family]), _SIZE_ID[size])


def sample_offsets(
    key: jax.Array, count: int, extent: tuple[int, ...], window: tuple[int, ...]
) -> jax.Array:
    """`count` offsets `[count, len(extent)]`, each coordinate uniform in `0..extent-window`."""
    maxval = jnp.asarray(extent, jnp.int32) - jnp.asarray(window, jnp.int32) + 1  # exclusive
    # Explicit int32: the draws must not change with jax_enable_x64.
    return jax.random.randint(key, (count, len(extent)), 0, maxval, dtype=jnp.int32)


def spatial_crops(
    fmap: jax.Array, keys: jax.Array, size: int, count: int
) -> tuple[jax.Array, jax.Array]:
    """Square spatial crops of every sample.

    Args:
      fmap: `[B, T, H, W, C]` feature map.
      keys: `[B]` PRNG keys, one per sample (already specific to view, family and size).
      size: crop side; count: crops per sample.
    Returns:
      crops `[B, count, T, size, size, C]` and their (y, x) offsets `[B, count, 2]`.
    """
    _, t, h, w, c = fmap.shape
    if size > h or size > w:
        raise ValueError(f"spatial crop {size}×{size} is larger than the {h}×{w} feature map")
    offsets = jax.vmap(lambda k: sample_offsets(k, count, (h, w), (size, size)))(keys)

    def cut(sample, yx):
        zero = jnp.zeros((), jnp.int32)
        return jax.lax.dynamic_slice(sample, (zero, yx[0], yx[1], zero), (t, size, size, c))

    crops = jax.vmap(lambda s, o: jax.vmap(lambda yx: cut(s, yx))(o))(fmap, offsets)
    return crops, offsets


def temporal_crops(
    fmap: jax.Array, keys: jax.Array, length: int, count: int
) -> tuple[jax.Array, jax.Array]:
    """Temporal crops of every sample.

    Args:
      fmap: `[B, T, H, W, C]`; keys: `[B]` PRNG keys; length: time steps kept; count: crops.
    Returns:
      crops `[B, count, length, H, W, C]` and their start offsets `[B, count]`.
    """
    _, t, h, w, c = fmap.shape
    if length > t:
        raise ValueError(f"temporal crop of {length} steps is longer than the map's T'={t}")
    offsets = jax.vmap(lambda k: sample_offsets(k, count, (t,), (length,))[:, 0])(keys)

    def cut(sample, start):
        zero = jnp.zeros((), jnp.int32)
        return jax.lax.dynamic_slice(sample, (start, zero, zero, zero), (length, h, w, c))

    crops = jax.vmap(lambda s, o: jax.vmap(lambda st: cut(s, st))(o))(fmap, offsets)
    return crops, offsets


def feature_crops(
    fmap: jax.Array, sample_keys: jax.Array, config: CropConfig, *, with_small: bool = True
) -> dict[str, dict[str, jax.Array]]:
    """All configured crops of one view.

    Args:
      fmap: `[B, T, H, W, C]` map of one view; sample_keys: `[B]` keys of (sample, view).
      with_small: also cut the small crops (the loss uses small crops of one view only).
    Returns:
      `{family: {"large": [B, n, t, h, w, C], "small": ...}}` for active families; a kind
      with count 0 is absent.
    """
    t, h, w = fmap.shape[1:4]
    config.validate((t, h, w))
    out: dict[str, dict[str, jax.Array]] = {}
    for family in config.active_families():
        cut = spatial_crops if family == SPACE else temporal_crops
        out[family] = {}
        for kind, n, size in zip(("large", "small"), config.counts(family), config.sizes(family)):
            if n == 0 or (kind == "small" and not with_small):
                continue
            keys = jax.vmap(lambda k: crop_key(k, family, kind))(sample_keys)
            out[family][kind] = cut(fmap, keys, size, n)[0]
    return out
