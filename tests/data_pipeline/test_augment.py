import dataclasses

import numpy as np
import pytest

from data_pipeline.augment import AugmentConfig, augment_clip, gaussian_blur
from data_pipeline.tensorflow_cpu import tf

CONFIG = AugmentConfig(crop_size=24, blur_kernel_size=5)


def _clip(num_frames: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (num_frames, 30, 40, 3), dtype=np.uint8)


def test_every_frame_of_a_view_gets_the_same_augmentation():
    frames = _clip()
    for seed in range(6):
        view = augment_clip(frames, tf.constant([seed, 1]), CONFIG).numpy()
        for t in range(len(frames)):
            alone = augment_clip(frames[t : t + 1], tf.constant([seed, 1]), CONFIG).numpy()[0]
            np.testing.assert_allclose(view[t], alone, atol=1e-4)


def test_two_seeds_give_two_different_views_and_one_seed_the_same():
    frames = _clip()
    view1 = augment_clip(frames, tf.constant([7, 1]), CONFIG).numpy()
    view2 = augment_clip(frames, tf.constant([7, 2]), CONFIG).numpy()
    again = augment_clip(frames, tf.constant([7, 1]), CONFIG).numpy()
    assert view1.shape == (4, 24, 24, 3) and view1.dtype == np.float32
    assert np.abs(view1 - view2).mean() > 0.05
    np.testing.assert_array_equal(view1, again)


def test_crop_boxes_stay_in_the_scale_and_aspect_ranges_and_span_them():
    """Each view's box, read off the view itself: the frame's red and green channels hold each
    pixel's x and y, so a view's extreme values are its box's edges (to a pixel). Spec §7's
    RandomResizedCrop: area 0.14-1 of the frame, width / height 3/4-4/3."""
    from data_pipeline import augment

    h, w = 120, 160
    ys, xs = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    frame = np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.float32)[None]
    config = dataclasses.replace(CONFIG, crop_size=32)
    areas, ratios = [], []
    for seed in range(200):
        view = augment.random_resized_crop(frame, tf.constant([seed, 3]), config).numpy()[0]
        # Bilinear with half-pixel centres: the outer samples sit within a pixel of the edges.
        box_w = (view[..., 0].max() - view[..., 0].min()) * w + 1
        box_h = (view[..., 1].max() - view[..., 1].min()) * h + 1
        areas.append(box_w * box_h / (w * h))
        ratios.append(box_w / box_h)
    areas, ratios = np.array(areas), np.array(ratios)
    assert areas.min() > 0.14 * 0.93 and areas.max() <= 1.0 + 1e-6, (areas.min(), areas.max())
    assert ratios.min() > 0.75 * 0.96 and ratios.max() < (4 / 3) * 1.04, (
        ratios.min(),
        ratios.max(),
    )
    # The ranges are used, not a corner of them.
    assert areas.min() < 0.3 and areas.max() > 0.8, (areas.min(), areas.max())
    assert ratios.min() < 0.85 and ratios.max() > 1.2


def test_identity_settings_only_crop_resize_and_normalise():
    identity = AugmentConfig(
        crop_size=30,
        crop_scale=(1.0, 1.0),
        crop_ratio=(40 / 30, 40 / 30),
        flip_prob=0.0,
        color_jitter_prob=0.0,
        grayscale_prob=0.0,
        blur_prob=0.0,
    )
    frames = _clip()[:, :, :30]  # square: the crop is the whole frame
    view = augment_clip(frames, tf.constant([0, 0]), identity).numpy()
    np.testing.assert_allclose(view, (frames / 255 - 0.45) / 0.225, atol=1e-5)


@pytest.mark.parametrize("sigma", [0.1, 2.0])
def test_blur_keeps_a_constant_image_constant(sigma):
    constant = tf.fill([2, 12, 12, 3], 0.3)
    np.testing.assert_allclose(
        gaussian_blur(constant, tf.constant(sigma), 11 if sigma > 1 else 5), 0.3, atol=1e-6
    )


def test_grayscale_views_happen_at_about_their_probability():
    frames = _clip(1)
    config = AugmentConfig(crop_size=16, blur_kernel_size=3, color_jitter_prob=0.0)
    gray = 0
    for seed in range(200):
        view = augment_clip(frames, tf.constant([seed, 5]), config).numpy()
        gray += np.allclose(view[..., 0], view[..., 1]) and np.allclose(view[..., 1], view[..., 2])
    assert 20 <= gray <= 65  # p = 0.2 of 200


def test_the_folded_colour_map_equals_the_ops_applied_one_after_another():
    from data_pipeline import augment

    frames = np.random.default_rng(1).uniform(0.3, 0.7, (3, 8, 8, 3)).astype(np.float32)
    factors = tf.constant([1.2, 0.7, 1.3])
    luma = np.array([0.299, 0.587, 0.114], np.float32)

    def mean_grey_of(matrix, offset):
        return (tf.reduce_mean(frames, axis=[1, 2]) @ matrix + offset) @ luma[:, None]

    brightness, contrast, saturation = augment._affine_colour_ops(mean_grey_of, factors)
    matrix, offset = tf.eye(3), tf.zeros([3, 3])
    for op in (contrast, saturation, brightness):
        matrix, offset = op(matrix, offset)
    folded = augment.apply_colour_transform(frames, matrix, offset).numpy()

    expected = frames

    def grey(x):
        return (x @ luma)[..., None]

    expected = (expected - grey(expected).mean(axis=(1, 2), keepdims=True)) * 0.7 + grey(
        expected
    ).mean(axis=(1, 2), keepdims=True)
    expected = grey(expected) + 1.3 * (expected - grey(expected))
    expected = np.clip(expected * 1.2, 0, 1)
    np.testing.assert_allclose(folded, expected, atol=1e-5)


def test_a_flipped_view_is_the_mirror_of_the_unflipped_one():
    # The flip coin has its own seed: flip_prob 1 vs 0 changes nothing else of the view.
    frames = _clip(2)
    mirrored = augment_clip(
        frames, tf.constant([3, 4]), dataclasses.replace(CONFIG, flip_prob=1.0)
    ).numpy()
    plain = augment_clip(
        frames, tf.constant([3, 4]), dataclasses.replace(CONFIG, flip_prob=0.0)
    ).numpy()
    np.testing.assert_allclose(mirrored, plain[:, :, ::-1], atol=1e-4)


@pytest.mark.parametrize("sigma", [0.1, 0.7, 2.0])
def test_blur_matches_scipy_gaussian_filter_with_reflect_borders(sigma):
    from scipy import ndimage

    frames = np.random.default_rng(2).uniform(0, 1, (2, 20, 17, 3)).astype(np.float32)
    # scipy's "mirror" is torchvision's reflect (edge not repeated); truncate to radius 5 = kernel 11.
    expected = ndimage.gaussian_filter(
        frames, sigma=(0, sigma, sigma, 0), mode="mirror", truncate=5 / sigma
    )
    blurred = gaussian_blur(frames, tf.constant(sigma), 11).numpy()
    np.testing.assert_allclose(blurred, expected, atol=1e-5)


def test_blur_matches_torchvision_gaussian_blur():
    torch = pytest.importorskip("torch")
    from torchvision.transforms import functional as tvf

    frames = np.random.default_rng(3).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    expected = tvf.gaussian_blur(torch.from_numpy(frames).permute(0, 3, 1, 2), [11, 11], [1.3, 1.3])
    blurred = gaussian_blur(frames, tf.constant(1.3), 11).numpy()
    np.testing.assert_allclose(blurred, expected.permute(0, 2, 3, 1).numpy(), atol=1e-5)


@pytest.mark.parametrize("grayscale", [False, True])
def test_a_view_equals_the_simclr_chain_applied_op_by_op(grayscale):
    # Reference: crop + resize, then flip, jitter (factors and order drawn as augment_clip does),
    # grayscale, blur (scipy) and normalisation, each as its own NumPy op on [0, 1] values.
    from scipy import ndimage

    from data_pipeline import augment

    config = dataclasses.replace(
        CONFIG, flip_prob=1.0, color_jitter_prob=1.0, grayscale_prob=float(grayscale), blur_prob=1.0
    )
    frames = _clip(3)
    seed = tf.constant([5, 9])
    crop_seed, _, _, jitter_seed, _, _, sigma_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 7)
    )
    x = augment.random_resized_crop(frames, crop_seed, config).numpy()[:, :, ::-1] / 255.0
    factor_seed, order_seed = tf.unstack(tf.random.experimental.stateless_split(jitter_seed, 2))
    factors = tf.random.stateless_uniform([3], factor_seed, minval=0.6, maxval=1.4).numpy()
    order = augment._JITTER_ORDERS[
        int(tf.random.stateless_uniform([], order_seed, 0, 6, dtype=tf.int32))
    ]
    luma = np.array([0.299, 0.587, 0.114])

    def grey(image):
        return (image @ luma)[..., None]

    ops = (
        lambda image: image * factors[0],
        lambda image: (
            (image - grey(image).mean(axis=(1, 2), keepdims=True)) * factors[1]
            + grey(image).mean(axis=(1, 2), keepdims=True)
        ),
        lambda image: grey(image) + factors[2] * (image - grey(image)),
    )
    for op_index in order:
        x = ops[op_index](x)
    if grayscale:
        x = np.repeat(grey(x), 3, axis=-1)
    x = np.clip(x, 0, 1)  # once, after the last colour op (see augment)
    sigma = float(tf.random.stateless_uniform([], sigma_seed, 0.1, 2.0))
    x = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="mirror", truncate=2 / sigma)
    expected = (x - 0.45) / 0.225
    np.testing.assert_allclose(augment_clip(frames, seed, config).numpy(), expected, atol=1e-4)
