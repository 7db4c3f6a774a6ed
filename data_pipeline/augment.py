"""Clip-consistent SimCLR-style video augmentation (spec §7), as pure stateless TF functions.

Every random parameter of a view is drawn once from that view's seed and applied to all of its
frames, so motion stays coherent inside a view while the two views of a clip differ. Parameters
depend only on the seed and the frame size, never on the frame content or the number of frames.

Speed (profiled with benchmarks/input_pipeline.py): the flip mirrors the uint8 crop before it is
resized, and colour jitter, grayscale and the final clip are folded into one
per-frame affine colour map applied in a single pass. Brightness, contrast (towards each frame's
mean grey) and saturation are affine in the pixel values, so their composition in any order is
exact; the one difference from torchvision is that values are clipped to [0, 1] once, after the
last colour op, instead of after each op.
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


def random_resized_crop(frames: tf.Tensor, seed: tf.Tensor, config: AugmentConfig, flip: tf.Tensor | bool = False) -> tf.Tensor:
  """One random box (scale, ratio) for the whole clip, resized to S×S, mirrored if `flip`.

  Args:
    frames: uint8 or float `[T, H, W, 3]`.
    seed: int `[2]` stateless seed.
    config: crop size, scale range (fraction of the frame area) and aspect-ratio range (w/h).
    flip: scalar bool; mirrors the crop left-right.

  Returns:
    float32 `[T, S, S, 3]` in the input's value range (bilinear).
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
  cropped = tf.slice(frames, tf.concat([[0], begin[:2], [0]], 0), tf.concat([[-1], size[:2], [-1]], 0))
  # Mirroring the crop before resizing touches the fewest (and narrowest, uint8) values.
  cropped = tf.cond(tf.convert_to_tensor(flip), lambda: tf.reverse(cropped, axis=[2]), lambda: cropped)
  return tf.image.resize(cropped, [config.crop_size, config.crop_size], method="bilinear")


def _grayscale(frames: tf.Tensor) -> tf.Tensor:
  """`[..., 3]` -> `[..., 1]` luma."""
  return tf.image.rgb_to_grayscale(frames)


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
    frame_means: tf.Tensor, seed: tf.Tensor, config: AugmentConfig, jitter: tf.Tensor, grayscale: tf.Tensor
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
  factors = tf.random.stateless_uniform([3], factor_seed, minval=1.0 - strengths, maxval=1.0 + strengths)
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

  order_index = tf.random.stateless_uniform([], order_seed, 0, len(_JITTER_ORDERS), dtype=tf.int32)
  jittered = tf.switch_case(order_index, [apply_in_order(order) for order in _JITTER_ORDERS])
  matrix, offset = tf.cond(jitter, lambda: jittered, lambda: start)
  to_grey = luma * tf.ones([1, 3])
  return tf.cond(grayscale, lambda: (matrix @ to_grey, offset @ to_grey), lambda: (matrix, offset))


def color_jitter(frames: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
  """Brightness, contrast, saturation in random order on float `[T, H, W, 3]` in [0, 1]."""
  matrix, offset = colour_transform(
      tf.reduce_mean(frames, axis=[1, 2]), seed, config, tf.constant(True), tf.constant(False)
  )
  return apply_colour_transform(frames, matrix, offset)


def apply_colour_transform(frames: tf.Tensor, matrix: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
  """`clip(x @ matrix + offset[t], 0, 1)` for float `[T, H, W, 3]`, one pass."""
  out = tf.einsum("thwc,cd->thwd", frames, matrix) + offset[:, tf.newaxis, tf.newaxis, :]
  return tf.clip_by_value(out, 0.0, 1.0)


def gaussian_blur(frames: tf.Tensor, sigma: tf.Tensor, kernel_size: int) -> tf.Tensor:
  """Isotropic separable Gaussian blur with reflect padding (torchvision's border mode).

  Args:
    frames: float `[T, H, W, C]` (H, W > kernel_size // 2).
    sigma: scalar standard deviation in pixels.
    kernel_size: odd kernel width.

  Returns:
    float32 `[T, H, W, C]`.
  """
  radius = kernel_size // 2
  offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
  kernel_1d = tf.exp(-0.5 * tf.square(offsets / sigma))
  kernel_1d /= tf.reduce_sum(kernel_1d)
  channels = tf.shape(frames)[-1]
  padded = tf.pad(frames, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
  vertical = tf.tile(tf.reshape(kernel_1d, [kernel_size, 1, 1, 1]), [1, 1, channels, 1])
  horizontal = tf.tile(tf.reshape(kernel_1d, [1, kernel_size, 1, 1]), [1, 1, channels, 1])
  blurred = tf.nn.depthwise_conv2d(padded, vertical, strides=[1, 1, 1, 1], padding="VALID")
  return tf.nn.depthwise_conv2d(blurred, horizontal, strides=[1, 1, 1, 1], padding="VALID")


def augment_clip(frames: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
  """One augmented, normalised view of a clip, every frame with the same parameters.

  Order (SimCLR): random resized crop → horizontal flip → colour jitter (p) → grayscale (p) →
  Gaussian blur (p) → normalise.

  Args:
    frames: uint8 `[T, H, W, 3]`.
    seed: int `[2]`, the view's stateless seed; equal seeds give equal views.
    config: augmentation parameters.

  Returns:
    float32 `[T, S, S, 3]`, `(x / 255 - mean) / std`.
  """
  (crop_seed, flip_seed, jitter_apply_seed, jitter_seed, gray_seed, blur_apply_seed,
   sigma_seed) = tf.unstack(tf.random.experimental.stateless_split(seed, 7))

  def happens(probability: float, coin_seed: tf.Tensor) -> tf.Tensor:
    return tf.random.stateless_uniform([], coin_seed) < probability

  clip_shape = [None, config.crop_size, config.crop_size, 3]
  clip = random_resized_crop(frames, crop_seed, config, flip=happens(config.flip_prob, flip_seed))
  clip = tf.ensure_shape(clip, clip_shape)
  if frames.dtype == tf.uint8:
    clip = clip / 255.0
  jitter = happens(config.color_jitter_prob, jitter_apply_seed)
  grayscale = happens(config.grayscale_prob, gray_seed)
  clip = tf.cond(
      tf.logical_or(jitter, grayscale),
      lambda: apply_colour_transform(
          clip, *colour_transform(tf.reduce_mean(clip, axis=[1, 2]), jitter_seed, config, jitter, grayscale)
      ),
      lambda: clip,
  )
  clip = tf.ensure_shape(clip, clip_shape)
  sigma = tf.random.stateless_uniform([], sigma_seed, config.blur_sigma[0], config.blur_sigma[1])
  clip = tf.cond(
      happens(config.blur_prob, blur_apply_seed),
      lambda: gaussian_blur(clip, sigma, config.blur_kernel_size),
      lambda: clip,
  )
  clip = tf.ensure_shape(clip, clip_shape)
  return normalize(clip, mean=config.mean, std=config.std)
