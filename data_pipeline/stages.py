"""The per-example stages: sample → decode → preprocess, as pure graph functions.

Each takes a parsed record (`records.parse`: video as `[T_total]` JPEG strings, audio int16
`[N]`, label) and the `InputConfig`, and for training a stateless seed: its outputs are a pure
function of those, so a sample is the same on any host layout and after any resumption. Frames
are sampled *before* JPEG decoding (only the clip's frames are decoded), and a clip's audio
window starts at its first frame. One stage per dataset purpose (`pipeline.make_dataset`):
`pretrain_example`, `supervised_example`, `video_eval_example`, `audio_eval_example`.
"""

from collections.abc import Mapping

from data_pipeline.audio_features import log_mel_spectrogram, official_log_filterbank
from data_pipeline.audio_frontends import check_audio_frontend
from data_pipeline.augment import augment_clip, normalize
from data_pipeline.input_config import InputConfig
from data_pipeline.tensorflow_cpu import tf


def decode_frames(jpeg_frames: tf.Tensor, frame_indices: tf.Tensor) -> tf.Tensor:
    """Decodes only the frames at `frame_indices`.

    Args:
      jpeg_frames: tf.string `[T_total]`.
      frame_indices: int `[T]`, each in `[0, T_total)`.

    Returns:
      uint8 `[T, H, W, 3]`.
    """
    return tf.map_fn(
        lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_FAST"),
        tf.gather(jpeg_frames, frame_indices),
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )


def clip_frame_indices(
    start: tf.Tensor, num_available: tf.Tensor, config: InputConfig
) -> tf.Tensor:
    """int32 `[T]`: the clip's frames from `start`, clamped to the last frame of short videos."""
    indices = start + tf.range(config.num_frames) * config.frame_stride
    return tf.minimum(indices, tf.maximum(num_available - 1, 0))


def clip_span(config: InputConfig) -> int:
    """Stored frames covered by one clip."""
    return (config.num_frames - 1) * config.frame_stride + 1


def audio_window(
    audio: tf.Tensor, start_seconds: tf.Tensor, num_samples: int, sample_rate: int
) -> tf.Tensor:
    """The `num_samples` of audio from `start_seconds` (spec §7).

    If the window would run past the end it is moved back to end at the end; audio shorter than
    the window is zero-padded.

    Args:
      audio: int16 `[N]`.
      start_seconds: scalar float.
      num_samples: window length L.
      sample_rate: Hz.

    Returns:
      float32 `[L]` in [-1, 1].
    """
    available = tf.shape(audio)[0]
    start = tf.cast(tf.round(tf.cast(start_seconds, tf.float32) * sample_rate), tf.int32)
    start = tf.clip_by_value(start, 0, tf.maximum(available - num_samples, 0))
    window = audio[start : start + num_samples]
    window = tf.pad(window, [[0, num_samples - tf.shape(window)[0]]])
    return tf.ensure_shape(tf.cast(window, tf.float32) / 32768.0, [num_samples])


def spectrogram(waveform: tf.Tensor, config: InputConfig) -> tf.Tensor:
    """float `[..., L]` → `[..., F, T_spec, 1]` by `config.audio_frontend` with its STFT settings."""
    check_audio_frontend(config.audio_frontend)
    if config.audio_frontend == "official":
        features = official_log_filterbank(
            waveform,
            sample_rate=config.sample_rate,
            num_filters=config.num_mel_bins,
            window_length=config.window_length,
            hop_length=config.hop_length,
            fft_length=config.fft_length,
        )
        return features[..., tf.newaxis]
    features = log_mel_spectrogram(
        waveform,
        sample_rate=config.sample_rate,
        num_mel_bins=config.num_mel_bins,
        window_length=config.window_length,
        hop_length=config.hop_length,
        fft_length=config.fft_length,
    )
    return features[..., tf.newaxis]


def example_seed(seed: int, process_index: int, position: tf.Tensor) -> tf.Tensor:
    """int64 `[2]`: the stateless seed of element `position` of host `process_index`'s training
    stream (the seed a training stage takes)."""
    host_seed = tf.constant([seed, process_index], tf.int64)
    return tf.random.experimental.stateless_fold_in(host_seed, tf.cast(position, tf.int64))


def _random_window_start(
    num_available: tf.Tensor, seed: tf.Tensor, config: InputConfig
) -> tf.Tensor:
    last_start = tf.maximum(num_available - clip_span(config), 0)
    return tf.random.stateless_uniform([], seed, 0, last_start + 1, dtype=tf.int32)


def pretrain_example(
    example: Mapping[str, tf.Tensor], seed: tf.Tensor, config: InputConfig
) -> dict[str, tf.Tensor]:
    """Two views of one random window + that window's audio spectrogram.

    Args:
      example: parsed record with `video` tf.string `[T_total]`, `audio` int16 `[N]`, `label`.
      seed: int `[2]`, the sample's stateless seed.
      config: sizes and augmentation.

    Returns:
      video1, video2 float32 `[T, S, S, 3]`, audio float32 `[F, T_spec, 1]`, label int32 `[]`.
    """
    window_seed, view1_seed, view2_seed, volume_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4)
    )
    jpeg_frames = example["video"]
    num_available = tf.shape(jpeg_frames)[0]
    start = _random_window_start(num_available, window_seed, config)
    frames = decode_frames(jpeg_frames, clip_frame_indices(start, num_available, config))
    augment = config.augment_config()
    waveform = audio_window(
        example["audio"],
        tf.cast(start, tf.float32) / config.fps,
        config.audio_samples,
        config.sample_rate,
    )
    volume = tf.random.stateless_uniform(
        [], volume_seed, config.volume_jitter[0], config.volume_jitter[1]
    )
    return {
        "video1": augment_clip(frames, view1_seed, augment),
        "video2": augment_clip(frames, view2_seed, augment),
        "audio": spectrogram(waveform * volume, config),
        "label": tf.cast(example["label"], tf.int32),
    }


def supervised_example(
    example: Mapping[str, tf.Tensor], seed: tf.Tensor, config: InputConfig
) -> dict[str, tf.Tensor]:
    """One augmented view of a random window: video float32 `[T, S, S, 3]`, label int32 `[]`."""
    window_seed, view_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    jpeg_frames = example["video"]
    num_available = tf.shape(jpeg_frames)[0]
    start = _random_window_start(num_available, window_seed, config)
    frames = decode_frames(jpeg_frames, clip_frame_indices(start, num_available, config))
    return {
        "video": augment_clip(frames, view_seed, config.augment_config()),
        "label": tf.cast(example["label"], tf.int32),
    }


def evenly_spaced_starts(num_available: tf.Tensor, span: int, count: int) -> tf.Tensor:
    """int32 `[count]`: starts of `count` windows of `span` spread from the first to the last."""
    last_start = tf.cast(tf.maximum(num_available - span, 0), tf.float32)
    return tf.cast(tf.round(tf.linspace(0.0, last_start, count)), tf.int32)


def spatial_crops(frames: tf.Tensor, config: InputConfig) -> tf.Tensor:
    """Short side → `eval_short_side`, then `eval_crops` S×S crops spread along the long side.

    Args:
      frames: uint8 `[..., H, W, 3]`.

    Returns:
      float32 `[eval_crops, ..., S, S, 3]` in [0, 255].
    """
    height, width = tf.shape(frames)[-3], tf.shape(frames)[-2]
    scale = config.eval_short_side / tf.cast(tf.minimum(height, width), tf.float32)
    new_height = tf.maximum(
        tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32), config.crop_size
    )
    new_width = tf.maximum(
        tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32), config.crop_size
    )
    leading = tf.shape(frames)[:-3]
    flat = tf.reshape(frames, tf.concat([[-1], [height, width, 3]], 0))
    resized = tf.image.resize(flat, tf.stack([new_height, new_width]), method="bilinear")
    size = config.crop_size
    fractions = (
        [0.5]
        if config.eval_crops == 1
        else [c / (config.eval_crops - 1) for c in range(config.eval_crops)]
    )
    crops = []
    for fraction in fractions:
        # Along the long side the crops go from one end to the other; across it they are centred.
        along_height = new_height > new_width
        y_fraction = tf.where(along_height, fraction, 0.5)
        x_fraction = tf.where(along_height, 0.5, fraction)
        y = tf.cast(tf.round(y_fraction * tf.cast(new_height - size, tf.float32)), tf.int32)
        x = tf.cast(tf.round(x_fraction * tf.cast(new_width - size, tf.float32)), tf.int32)
        crop = resized[:, y : y + size, x : x + size, :]
        crops.append(tf.reshape(crop, tf.concat([leading, [size, size, 3]], 0)))
    return tf.stack(crops)


def video_eval_example(
    example: Mapping[str, tf.Tensor], config: InputConfig
) -> dict[str, tf.Tensor]:
    """N evenly spaced clips × C spatial crops: video float32 `[N * C, T, S, S, 3]` (clip-major)."""
    jpeg_frames = example["video"]
    num_available = tf.shape(jpeg_frames)[0]
    starts = evenly_spaced_starts(num_available, clip_span(config), config.eval_clips)
    indices = tf.map_fn(
        lambda start: clip_frame_indices(start, num_available, config), starts
    )  # [N, T]
    frames = decode_frames(jpeg_frames, tf.reshape(indices, [-1]))
    frames = tf.reshape(
        frames, tf.concat([[config.eval_clips, config.num_frames], tf.shape(frames)[1:]], 0)
    )
    crops = spatial_crops(frames, config)  # [C, N, T, S, S, 3]
    views = tf.reshape(
        tf.transpose(crops, [1, 0, 2, 3, 4, 5]),
        [-1, config.num_frames, config.crop_size, config.crop_size, 3],
    )
    return {
        "video": normalize(views / 255.0, mean=config.mean, std=config.std),
        "label": tf.cast(example["label"], tf.int32),
    }


def audio_eval_example(
    example: Mapping[str, tf.Tensor], config: InputConfig
) -> dict[str, tf.Tensor]:
    """`audio_eval_subclips` evenly spaced sub-clips: audio float32 `[n_sub, F, T_sub, 1]`."""
    num_samples = round(config.audio_eval_seconds * config.sample_rate)
    audio = example["audio"]
    starts = evenly_spaced_starts(tf.shape(audio)[0], num_samples, config.audio_eval_subclips)
    waveforms = tf.map_fn(
        lambda start: audio_window(
            audio, tf.cast(start, tf.float32) / config.sample_rate, num_samples, config.sample_rate
        ),
        starts,
        fn_output_signature=tf.TensorSpec([num_samples], tf.float32),
    )
    return {"audio": spectrogram(waveforms, config), "label": tf.cast(example["label"], tf.int32)}
