"""Feature crops: uniform over every valid offset, exact slices, keyed per sample and view."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stica_jax import crops
from stica_jax.crops import CropConfig, feature_crops, spatial_crops, temporal_crops
from tests.tiny import random_batch, tiny_config, tiny_model

B, T, H, W, C = 64, 8, 7, 7, 3
FMAP = jnp.arange(B * T * H * W * C, dtype=jnp.float32).reshape(B, T, H, W, C)
KEYS = jax.random.split(jax.random.key(0), B)


@pytest.mark.parametrize("size", [6, 4])
def test_spatial_offsets_reach_every_valid_position_including_the_last(size):
    _, offsets = jax.jit(spatial_crops, static_argnums=(2, 3))(FMAP, KEYS, size, 8)
    seen_y, seen_x = (
        set(np.asarray(offsets[..., 0]).ravel()),
        set(np.asarray(offsets[..., 1]).ravel()),
    )
    assert seen_y == seen_x == set(range(H - size + 1))


@pytest.mark.parametrize("length", [6, 4])
def test_temporal_offsets_reach_every_valid_start_including_the_last(length):
    _, offsets = jax.jit(temporal_crops, static_argnums=(2, 3))(FMAP, KEYS, length, 8)
    assert set(np.asarray(offsets).ravel()) == set(range(T - length + 1))


# Every crop kind of the SOTA map [T'=8, 7, 7]: (family, kind, window).
KINDS = [("space", "large", 6), ("space", "small", 4), ("time", "large", 6), ("time", "small", 4)]


@pytest.mark.parametrize("family,kind,window", KINDS)
def test_offset_frequencies_are_uniform_within_a_chi_square_bound(family, kind, window):
    """Pearson's χ² of the (y, x) or t offsets against uniform over every valid position.

    The keys are fixed, so the statistic is fixed; the bound is χ²'s 1 - 1e-6 quantile (27-57
    for these k). Offsets drawn like the official code's (exclusive bound: never the last
    position) score 4,100-49,000 here.
    """
    from scipy import stats

    b, count = 4096, 4
    fmap = jnp.zeros((b, T, H, W, 1))
    keys = jax.vmap(lambda k: crops.crop_key(k, family, kind))(
        jax.random.split(jax.random.key(7), b)
    )
    cut = spatial_crops if family == "space" else temporal_crops
    _, offsets = jax.jit(cut, static_argnums=(2, 3))(fmap, keys, window, count)
    offsets = np.asarray(offsets).reshape(b * count, -1)
    positions = (H if family == "space" else T) - window + 1
    assert offsets.min() == 0 and offsets.max() == positions - 1
    cells = np.ravel_multi_index(offsets.T, (positions,) * offsets.shape[1])
    k = positions ** offsets.shape[1]
    observed = np.bincount(cells, minlength=k)
    expected = len(cells) / k
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    assert chi2 < stats.chi2.ppf(1 - 1e-6, k - 1), (observed, chi2)


def test_spatial_crop_equals_numpy_slice_at_its_offset():
    out, offsets = jax.jit(spatial_crops, static_argnums=(2, 3))(FMAP, KEYS, 4, 3)
    fmap, out, offsets = np.asarray(FMAP), np.asarray(out), np.asarray(offsets)
    assert out.shape == (B, 3, T, 4, 4, C)
    for b in range(B):
        for n in range(3):
            y, x = offsets[b, n]
            np.testing.assert_array_equal(out[b, n], fmap[b, :, y : y + 4, x : x + 4])


def test_temporal_crop_equals_numpy_slice_at_its_offset():
    out, offsets = jax.jit(temporal_crops, static_argnums=(2, 3))(FMAP, KEYS, 6, 2)
    fmap, out, offsets = np.asarray(FMAP), np.asarray(out), np.asarray(offsets)
    assert out.shape == (B, 2, 6, H, W, C)
    for b in range(B):
        for n in range(2):
            s = offsets[b, n]
            np.testing.assert_array_equal(out[b, n], fmap[b, s : s + 6])


def test_same_key_same_crops_and_crops_differ_across_samples():
    config = CropConfig()
    crop = jax.jit(feature_crops, static_argnums=2)
    a = crop(FMAP, KEYS, config)
    b = crop(FMAP, KEYS, config)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    _, offsets = spatial_crops(FMAP, KEYS, 4, 4)
    distinct = {tuple(map(tuple, np.asarray(o))) for o in offsets}
    assert len(distinct) > B // 2  # 9^4 layouts per sample: collisions are rare


def test_the_model_crops_the_two_views_of_a_sample_at_independent_positions():
    """Both views identical: their full-clip embeddings agree, yet their large spatial crops
    (3×3 of the 4×4 map: 4 positions, 2 crops a view) differ for most samples. Shared crop keys
    would make every crop of view 1 equal view 2's."""
    config = tiny_config()
    config.model.head_dropout = 0.0
    model = tiny_model(config)
    model.eval()
    batch = random_batch(config, 8)
    keys = jax.random.split(jax.random.key(0), 8)
    out = nnx.jit(lambda m, v, a, k: m(v, v, a, k))(model, batch["video1"], batch["audio"], keys)
    np.testing.assert_allclose(out["video"][0], out["video"][1], rtol=1e-5, atol=1e-6)
    large = np.asarray(out["crops"]["space"]["large"])  # [view, B, n, E]
    assert large.shape[:3] == (2, 8, 2)
    differs = np.any(np.abs(large[0] - large[1]) > 1e-4, axis=(1, 2))
    # Independent positions: a sample's two crops coincide across views with chance 1/16.
    assert differs.sum() >= 5, differs


def test_crop_larger_than_the_map_is_named():
    """6×6 crops of a 64×64 input, whose map is 4×4 (stride 16)."""
    config = tiny_config()
    config.crops.space_large = 6
    model = tiny_model(config)
    v = jax.ShapeDtypeStruct((1, 16, 64, 64, 3), jnp.float32)
    a = jax.ShapeDtypeStruct((1, 40, 99, 1), jnp.float32)
    from flax import nnx

    with pytest.raises(
        ValueError, match="large spatial crop 6×6 is larger than the 4×4 feature map"
    ):
        nnx.eval_shape(
            lambda m, v, a: m(v, v, a, jax.random.split(jax.random.key(0), 1)), model, v, a
        )


def test_temporal_crop_longer_than_the_map_is_named():
    with pytest.raises(
        ValueError, match="large temporal crop of 6 steps is longer than the feature map's T'=4"
    ):
        CropConfig().validate((4, 7, 7))


def test_crops_enabled_with_zero_crops_is_named():
    config = CropConfig(n_space_large=0, n_space_small=0, n_time_large=0, n_time_small=0)
    with pytest.raises(ValueError, match="feature crops are enabled but every crop count is 0"):
        config.validate()


def test_small_crops_without_large_ones_are_named():
    with pytest.raises(ValueError, match="4 small space crops need at least one large"):
        CropConfig(n_space_large=0).validate()
