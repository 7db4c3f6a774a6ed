"""Clip-consistent SimCLR-style video augmentation (spec §7), as pure stateless TF functions.

Every random parameter of a view is drawn once from that view's seed and applied to all of its
frames, so motion stays coherent inside a view while the two views of a clip differ. Parameters
depend only on the seed and the frame size, never on the frame content or the number of frames.
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


def random_resized_crop(frames: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
  """One random box (scale, ratio) for the whole clip, resized to S×S.

  Args:
    frames: uint8 or float `[T, H, W, 3]`.
    seed: int `[2]` stateless seed.
    config: crop size, scale range (fraction of the frame area) and aspect-ratio range (w/h).

  Returns:
    float32 `[T, S, S, 3]` in the input's value range (bilinear).
  """
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_size=tf.shape(frames)[1:],
      bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed,
      min_object_covered=0.0,
      aspect_ratio_range=config.crop_ratio,
      area_range=config.crop_scale,
      max_attempts=10,
      use_image_if_no_bounding_boxes=True,
  )
  cropped = tf.slice(frames, tf.concat([[0], begin[:2], [0]], 0), tf.concat([[-1], size[:2], [-1]], 0))
  return tf.image.resize(cropped, [config.crop_size, config.crop_size], method="bilinear")


def _grayscale(frames: tf.Tensor) -> tf.Tensor:
  """`[..., 3]` -> `[..., 1]` luma (ITU-R 601, what torchvision uses)."""
  return tf.image.rgb_to_grayscale(frames)


def _adjust_brightness(frames: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  return tf.clip_by_value(frames * factor, 0.0, 1.0)


def _adjust_contrast(frames: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  # Blend with the mean grey of each frame (torchvision applies its op frame by frame).
  frame_mean = tf.reduce_mean(_grayscale(frames), axis=[-3, -2, -1], keepdims=True)
  return tf.clip_by_value((frames - frame_mean) * factor + frame_mean, 0.0, 1.0)


def _adjust_saturation(frames: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  gray = _grayscale(frames)
  return tf.clip_by_value(gray + (frames - gray) * factor, 0.0, 1.0)


def color_jitter(frames: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
  """Brightness, contrast, saturation factors in U(1 - s, 1 + s), applied in a random order.

  Args:
    frames: float `[T, H, W, 3]` in [0, 1].
    seed: int `[2]`.
    config: jitter strengths.

  Returns:
    float32 `[T, H, W, 3]` in [0, 1].
  """
  factor_seed, order_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  strengths = tf.constant([config.brightness, config.contrast, config.saturation], tf.float32)
  factors = tf.random.stateless_uniform([3], factor_seed, minval=1.0 - strengths, maxval=1.0 + strengths)
  operations = (_adjust_brightness, _adjust_contrast, _adjust_saturation)

  def apply_in_order(order: tuple[int, ...]):
    def branch() -> tf.Tensor:
      out = frames
      for op_index in order:
        out = operations[op_index](out, factors[op_index])
      return out

    return branch

  order_index = tf.random.stateless_uniform([], order_seed, 0, len(_JITTER_ORDERS), dtype=tf.int32)
  return tf.switch_case(order_index, [apply_in_order(order) for order in _JITTER_ORDERS])


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
  clip_shape = [None, config.crop_size, config.crop_size, 3]
  clip = tf.ensure_shape(random_resized_crop(frames, crop_seed, config), clip_shape)
  if frames.dtype == tf.uint8:
    clip = clip / 255.0

  def happens(probability: float, coin_seed: tf.Tensor) -> tf.Tensor:
    return tf.random.stateless_uniform([], coin_seed) < probability

  clip = tf.cond(happens(config.flip_prob, flip_seed), lambda: tf.reverse(clip, axis=[2]), lambda: clip)
  clip = tf.cond(
      happens(config.color_jitter_prob, jitter_apply_seed),
      lambda: color_jitter(clip, jitter_seed, config),
      lambda: clip,
  )
  clip = tf.ensure_shape(clip, clip_shape)
  clip = tf.cond(
      happens(config.grayscale_prob, gray_seed),
      lambda: tf.tile(_grayscale(clip), [1, 1, 1, 3]),
      lambda: clip,
  )
  sigma = tf.random.stateless_uniform([], sigma_seed, config.blur_sigma[0], config.blur_sigma[1])
  clip = tf.cond(
      happens(config.blur_prob, blur_apply_seed),
      lambda: gaussian_blur(clip, sigma, config.blur_kernel_size),
      lambda: clip,
  )
  clip = tf.ensure_shape(clip, clip_shape)
  return normalize(clip, mean=config.mean, std=config.std)
