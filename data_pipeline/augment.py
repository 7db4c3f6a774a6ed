"""Clip-consistent SimCLR-style video augmentation (spec §7), as pure stateless TF functions.

Every random parameter of a view is drawn once from that view's seed and applied to all of its
frames, so motion stays coherent inside a view while the two views of a clip differ. Parameters
depend only on the seed and the frame size, never on the frame content or the number of frames.

Speed (profiled with benchmarks/input_pipeline.py, numbers in benchmarks/RESULTS.md): after the
crop + resize, flip, colour jitter, grayscale, the clip to [0, 1] and the normalisation are one
fused XLA pass (a per-frame affine colour map), and the blur is two fused XLA passes of shifted
sums. Brightness, contrast (towards each frame's mean grey) and saturation are affine in the pixel
values, so their composition in any order is exact; the one difference from torchvision is that
values are clipped to [0, 1] once, after the last colour op, instead of after each op.
"""

import dataclasses
import itertools

from data_pipeline.tensorflow_cpu import tf

VIDEO_MEAN = 0.45
VIDEO_STD = 0.225


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Per-view augmentation of spec §7; the defaults are the SOTA ones."""

    crop_size: int = 112
    crop_scale: tuple[float, float] = (0.14, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    color_jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5
    blur_kernel_size: int = 11
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    mean: float = VIDEO_MEAN
    std: float = VIDEO_STD


# The six orders of (brightness, contrast, saturation): torchvision's ColorJitter shuffles them.
_JITTER_ORDERS = tuple(itertools.permutations(range(3)))


def normalize(frames: tf.Tensor, *, mean: float = VIDEO_MEAN, std: float = VIDEO_STD) -> tf.Tensor:
    """uint8 or [0, 1]-float `[..., 3]` -> float32 `(x - mean) / std`, same shape."""
    if frames.dtype == tf.uint8:
        frames = tf.cast(frames, tf.float32) / 255.0
    return (tf.cast(frames, tf.float32) - mean) / std


_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, what torchvision's grayscale uses


def random_resized_crop(frames: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """One random box (scale, ratio) for the whole clip, resized to S×S.

    Args:
      frames: uint8 or float `[T, H, W, 3]`.
      seed: int `[2]` stateless seed.
      config: crop size, scale range (fraction of the frame area) and aspect-ratio range (w/h).

    Returns:
      float32 `[T, S, S, 3]` in the input's value range (bilinear, half-pixel centres).
    """
    image_size = tf.shape(frames)[1:]
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_size=image_size,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=config.crop_ratio,
        area_range=config.crop_scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    cropped = tf.slice(
        frames, tf.concat([[0], begin[:2], [0]], 0), tf.concat([[-1], size[:2], [-1]], 0)
    )
    resized = tf.image.resize(cropped, [config.crop_size, config.crop_size], method="bilinear")
    return tf.ensure_shape(resized, [None, config.crop_size, config.crop_size, 3])


def _affine_colour_ops(mean_grey_of, factors: tf.Tensor):
    """The three jitter ops as maps of (matrix `[3, 3]`, offsets `[T, 3]`) acting on row pixels."""
    luma = tf.constant(_LUMA, tf.float32)[:, tf.newaxis]  # [3, 1]
    identity = tf.eye(3)

    def brightness(matrix, offset):
        return matrix * factors[0], offset * factors[0]

    def contrast(matrix, offset):
        mean_grey = mean_grey_of(matrix, offset)  # [T, 1]
        return matrix * factors[1], offset * factors[1] + (1.0 - factors[1]) * mean_grey

    def saturation(matrix, offset):
        towards_grey = factors[2] * identity + (1.0 - factors[2]) * luma * tf.ones([1, 3])
        return matrix @ towards_grey, offset @ towards_grey

    return brightness, contrast, saturation


def colour_transform(
    frame_means: tf.Tensor,
    seed: tf.Tensor,
    config: AugmentConfig,
    jitter: tf.Tensor,
    grayscale: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The per-frame affine colour map of one view: pixel row-vector x → x @ matrix + offset[t].

    Colour jitter (if `jitter`): brightness, contrast, saturation factors in U(1 - s, 1 + s) in a
    random order; then grayscale (if `grayscale`).

    Args:
      frame_means: float `[T, 3]`, mean colour of each frame (contrast blends towards its grey).
      seed: int `[2]`.
      config: jitter strengths.
      jitter, grayscale: scalar bools.

    Returns:
      (matrix float32 `[3, 3]`, offset float32 `[T, 3]`).
    """
    factor_seed, order_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    strengths = tf.constant([config.brightness, config.contrast, config.saturation], tf.float32)
    factors = tf.random.stateless_uniform(
        [3], factor_seed, minval=1.0 - strengths, maxval=1.0 + strengths
    )
    luma = tf.constant(_LUMA, tf.float32)[:, tf.newaxis]

    def mean_grey_of(matrix, offset):
        # Mean of an affine image = the affine map of the mean: no pass over the pixels.
        return (frame_means @ matrix + offset) @ luma

    operations = _affine_colour_ops(mean_grey_of, factors)
    start = (tf.eye(3), tf.zeros_like(frame_means))

    def apply_in_order(order: tuple[int, ...]):
        def branch():
            matrix, offset = start
            for op_index in order:
                matrix, offset = operations[op_index](matrix, offset)
            return matrix, offset

        return branch

    order_index = tf.random.stateless_uniform(
        [], order_seed, 0, len(_JITTER_ORDERS), dtype=tf.int32
    )
    jittered = tf.switch_case(order_index, [apply_in_order(order) for order in _JITTER_ORDERS])
    matrix, offset = tf.cond(jitter, lambda: jittered, lambda: start)
    to_grey = luma * tf.ones([1, 3])
    return tf.cond(
        grayscale, lambda: (matrix @ to_grey, offset @ to_grey), lambda: (matrix, offset)
    )


def _reflect_pad(frames: tf.Tensor, radius: int) -> tf.Tensor:
    """`[T, H, W, C]` → `[T, H + 2r, W + 2r, C]`, mirrored without repeating the edge (torchvision's)."""
    return tf.pad(frames, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")


def _frame_means(frames: tf.Tensor) -> tf.Tensor:
    """`[T, H, W, C]` → `[T, C]`, as a matmul with a row of 1 / HW: reducing the middle axes with
    `reduce_mean` is about twice slower, in TensorFlow and in XLA (profiled)."""
    shape = tf.shape(frames)
    pixels = shape[1] * shape[2]
    weights = tf.fill(tf.stack([shape[0], 1, pixels]), 1.0 / tf.cast(pixels, tf.float32))
    return tf.matmul(weights, tf.reshape(frames, tf.stack([shape[0], pixels, shape[3]])))[:, 0]


# The per-pixel ops and the blur taps run as XLA kernels: XLA fuses a chain of elementwise ops
# into one pass over the frames, where TensorFlow's own kernels take one pass per op (and a slow
# one for broadcasts over [T, 1, 1, 3]); profiled in benchmarks/RESULTS.md. Each function is a
# separate XLA cluster, so its output is materialised: the two blur passes must not be fused into
# one (that would recompute each row pass 11 times).
@tf.function(jit_compile=True)
def _colour_map(
    frames: tf.Tensor,
    matrix: tf.Tensor,
    offset: tf.Tensor,
    flip: tf.Tensor,
    mean: float,
    std: float,
    pad: int,
) -> tf.Tensor:
    """`(clip(x @ matrix + offset[t], 0, 1) - mean) / std`, mirrored if `flip`, reflect-padded by `pad`.

    One fused pass: float `[T, H, W, 3]` → float32 `[T, H + 2 pad, W + 2 pad, 3]`.
    """
    frames = tf.where(flip, tf.reverse(frames, axis=[2]), frames)
    # x @ matrix written per input channel: XLA fuses it, where a dot with K = 3 would not be.
    mapped = offset[:, tf.newaxis, tf.newaxis, :]
    for channel in range(3):
        mapped += frames[..., channel : channel + 1] * matrix[channel]
    out = (tf.clip_by_value(mapped, 0.0, 1.0) - mean) / std
    return _reflect_pad(out, pad) if pad else out


@tf.function(jit_compile=True)
def _blur_rows(padded: tf.Tensor, kernel_1d: tf.Tensor) -> tf.Tensor:
    """`[T, H + 2r, W', C]` → `[T, H, W', C]`: the taps along H, a fused sum of shifted slices."""
    taps = kernel_1d.shape[0]
    height = tf.shape(padded)[1] - (taps - 1)
    return tf.add_n([kernel_1d[i] * padded[:, i : i + height] for i in range(taps)])


@tf.function(jit_compile=True)
def _blur_columns(padded: tf.Tensor, kernel_1d: tf.Tensor) -> tf.Tensor:
    """`[T, H, W + 2r, C]` → `[T, H, W, C]`."""
    taps = kernel_1d.shape[0]
    width = tf.shape(padded)[2] - (taps - 1)
    return tf.add_n([kernel_1d[i] * padded[:, :, i : i + width] for i in range(taps)])


def gaussian_kernel(sigma: tf.Tensor, kernel_size: int) -> tf.Tensor:
    """float32 `[kernel_size]`: normalised samples of a Gaussian at integer offsets (torchvision's)."""
    radius = kernel_size // 2
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel_1d = tf.exp(-0.5 * tf.square(offsets / tf.cast(sigma, tf.float32)))
    return kernel_1d / tf.reduce_sum(kernel_1d)


def _blur_padded(padded: tf.Tensor, sigma: tf.Tensor, kernel_size: int) -> tf.Tensor:
    kernel_1d = gaussian_kernel(sigma, kernel_size)
    return _blur_columns(_blur_rows(padded, kernel_1d), kernel_1d)


def gaussian_blur(frames: tf.Tensor, sigma: tf.Tensor, kernel_size: int) -> tf.Tensor:
    """Isotropic separable Gaussian blur with reflect padding (torchvision's border mode).

    Args:
      frames: float `[T, H, W, C]` (H, W > kernel_size // 2).
      sigma: scalar standard deviation in pixels.
      kernel_size: odd kernel width.

    Returns:
      float32 `[T, H, W, C]`.
    """
    return _blur_padded(
        _reflect_pad(tf.cast(frames, tf.float32), kernel_size // 2), sigma, kernel_size
    )


def apply_colour_transform(frames: tf.Tensor, matrix: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """`clip(x @ matrix + offset[t], 0, 1)` for float `[T, H, W, 3]`, one pass."""
    return _colour_map(tf.cast(frames, tf.float32), matrix, offset, tf.constant(False), 0.0, 1.0, 0)


def augment_clip(frames: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """One augmented, normalised view of a clip, every frame with the same parameters.

    Order (SimCLR): random resized crop → horizontal flip → colour jitter (p) → grayscale (p) →
    Gaussian blur (p) → normalise. Computed as: crop + resize; one fused pass of flip, colour map
    (jitter + grayscale), clip to [0, 1] and normalisation; then the blur. Mirroring commutes with
    the (symmetric) resize, the per-pixel colour map and the (symmetric) blur, and the blur, whose
    weights sum to 1, commutes with the affine normalisation, so this equals the SimCLR order.

    Args:
      frames: uint8 `[T, H, W, 3]` (or float in [0, 1]).
      seed: int `[2]`, the view's stateless seed; equal seeds give equal views.
      config: augmentation parameters.

    Returns:
      float32 `[T, S, S, 3]`, `(x / 255 - mean) / std`.
    """
    (
        crop_seed,
        flip_seed,
        jitter_apply_seed,
        jitter_seed,
        gray_seed,
        blur_apply_seed,
        sigma_seed,
    ) = tf.unstack(tf.random.experimental.stateless_split(seed, 7))

    def happens(probability: float, coin_seed: tf.Tensor) -> tf.Tensor:
        return tf.random.stateless_uniform([], coin_seed) < probability

    value_scale = 1.0 / 255.0 if frames.dtype == tf.uint8 else 1.0
    clip = random_resized_crop(frames, crop_seed, config)  # [T, S, S, 3] in the input's range
    jitter = happens(config.color_jitter_prob, jitter_apply_seed)
    grayscale = happens(config.grayscale_prob, gray_seed)
    frame_means = tf.cond(
        jitter, lambda: _frame_means(clip) * value_scale, lambda: tf.zeros([tf.shape(clip)[0], 3])
    )
    matrix, offset = colour_transform(frame_means, jitter_seed, config, jitter, grayscale)
    matrix *= value_scale
    flip = happens(config.flip_prob, flip_seed)
    sigma = tf.random.stateless_uniform([], sigma_seed, config.blur_sigma[0], config.blur_sigma[1])
    radius = config.blur_kernel_size // 2
    view = tf.cond(
        happens(config.blur_prob, blur_apply_seed),
        lambda: _blur_padded(
            _colour_map(clip, matrix, offset, flip, config.mean, config.std, radius),
            sigma,
            config.blur_kernel_size,
        ),
        lambda: _colour_map(clip, matrix, offset, flip, config.mean, config.std, 0),
    )
    return tf.ensure_shape(view, [frames.shape[0], config.crop_size, config.crop_size, 3])
