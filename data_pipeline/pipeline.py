"""The tf.data audio-video input pipeline: prepared TFDS records → per-host NumPy batches.

Stages (DMVR's): read (record_stream: host shard, shuffle, resume) → parse (TFDS features, frames
left JPEG-encoded) → sample (one time window per clip) → decode (only the sampled frames) →
augment (per view, clip-consistent) / audio features → batch → NumPy.

Modes and their per-host batches (B = `batch_size_per_host`, T = `num_frames`, S = `crop_size`,
F = `num_mel_bins`, T_spec = `1 + (audio_seconds * sample_rate - window_length) // hop_length`):

  make_pretrain_dataset:   video1, video2 float32 [B, T, S, S, 3]; audio float32 [B, F, T_spec, 1];
                           index int64 [B]; label int32 [B]
  make_supervised_dataset: video float32 [B, T, S, S, 3]; index int64 [B]; label int32 [B]
  make_eval_dataset:       video float32 [B, N * C, T, S, S, 3] (clip-major: view v is clip
                           v // C, spatial crop v % C); label int32 [B]; mask bool [B];
                           index int64 [B]
  make_audio_eval_dataset: audio float32 [B, n_sub, F, T_sub, 1]; label int32 [B]; mask bool [B];
                           index int64 [B]

`index` of a training batch is the sample's position in the global stream,
`step * B * process_count + process_index * B + i`; of an eval batch, the host's example number.
Videos are normalised `(x / 255 - 0.45) / 0.225`; audio is `log(mel power + 1e-6)` ("stica"
front end) or the official loader's `logfbank` ("official"; `audio_features`).
"""

import dataclasses
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_pipeline import (
    builders,  # noqa: F401 - registers the stica_jax TFDS builders.
    record_stream,
)
from data_pipeline.audio_features import (
    AUDIO_FRONTENDS,
    log_mel_spectrogram,
    num_spectrogram_frames,
    official_log_filterbank,
)
from data_pipeline.augment import AugmentConfig, augment_clip, normalize
from data_pipeline.datasets import (  # load_builder: also public here
    PreparedDataset,
    load_builder,
    split_info,
)
from data_pipeline.errors import UserError
from data_pipeline.tensorflow_cpu import tf


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """Everything the pipeline reads from a config; defaults are the SOTA setting (spec §7, §10)."""

    dataset: str = "stica_kinetics400"  # TFDS name[/config], e.g. "av_digits", "stica_ucf101/fold1"
    # Video clip.
    num_frames: int = 60
    frame_stride: int = 1  # take every k-th 30-fps frame (a clip spans (T - 1) * k + 1 frames)
    fps: float = 30.0  # frame rate of the stored frames (what preparation wrote)
    crop_size: int = 112
    # Per-view augmentation (spec §7).
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
    mean: float = 0.45
    std: float = 0.225
    # Audio.
    audio_frontend: str = "stica"  # or "official" (audio_features: logfbank as the official loader)
    audio_seconds: float = 2.0
    sample_rate: int = 24_000
    num_mel_bins: int = 257
    window_length: int = 480
    hop_length: int = 240
    fft_length: int = 1024
    volume_jitter: tuple[float, float] = (0.9, 1.1)
    # Evaluation (spec §10).
    eval_clips: int = 10
    eval_crops: int = 3
    eval_short_side: int = 128  # frames are resized to this short side before the S×S crops
    audio_eval_subclips: int = 10  # ESC-50: 10 × 2 s; DCASE2014: 60 × 1 s
    audio_eval_seconds: float = 2.0
    # Reading.
    chunk_size: int = 16  # consecutive records per chunk (the unit of host sharding)
    group_size: int = 16  # chunks read at once, records interleaved round-robin
    prefetch_batches: int = 2
    # Records parsed, decoded and augmented at once; 0 = one per CPU core this process may use.
    # A fixed number, not tf.data.AUTOTUNE: with a tunable parallelism, deleting an iterator
    # whose host CPU had been busy (XLA on the CPU, a neighbour's job) blocked for 27-38 s
    # doing nothing (TF 2.21, measured at the end of every training run and evaluation pass);
    # with nothing left to tune it takes milliseconds. One per core is the ceiling AUTOTUNE
    # climbs to when the consumer waits for input.
    num_parallel_calls: int = 0

    @classmethod
    def from_any(cls, config: Any) -> "InputConfig":
        """From an InputConfig, a dataclass, an `ml_collections.ConfigDict` or a mapping.

        Only the fields of InputConfig are read; the others (model, optimiser...) are ignored.
        """
        if isinstance(config, cls):
            return config
        if dataclasses.is_dataclass(config):
            config = dataclasses.asdict(config)
        elif not isinstance(config, Mapping):
            config = dict(config)  # ConfigDict
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in config:
                value = config[field.name]
                values[field.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def augment_config(self) -> AugmentConfig:
        names = {field.name for field in dataclasses.fields(AugmentConfig)}
        return AugmentConfig(**{name: getattr(self, name) for name in names})

    @property
    def audio_samples(self) -> int:
        return round(self.audio_seconds * self.sample_rate)

    @property
    def spectrogram_frames(self) -> int:
        return num_spectrogram_frames(
            self.audio_samples,
            window_length=self.window_length,
            hop_length=self.hop_length,
            frontend=self.audio_frontend,
        )


# ----------------------------------------------------------------------------------------------
# Builders and records.


def _builder(
    config: InputConfig, data_dir: str | None, dataset: PreparedDataset | None
) -> tfds.core.DatasetBuilder:
    """The builder of `config.dataset`: `dataset`'s when given (opened once by the caller),
    else loaded from `data_dir` (resolved by `data_dir.resolve_data_dir`)."""
    if dataset is None:
        return load_builder(config.dataset, data_dir)
    if dataset.name != config.dataset:
        raise ValueError(
            f"dataset {dataset.name!r} was given for config.dataset {config.dataset!r}"
        )
    return dataset.builder


def _host_records(builder, split: str, config: InputConfig, process_index: int, process_count: int):
    return record_stream.host_records(
        split_info(builder, split).file_instructions,
        chunk_size=config.chunk_size,
        process_index=process_index,
        process_count=process_count,
    )


def _parse(builder: tfds.core.DatasetBuilder, record: tf.Tensor) -> dict[str, tf.Tensor]:
    """Serialized record → features, video left as `[T_total]` JPEG strings."""
    decoders = {"video": tfds.decode.SkipDecoding()} if "video" in builder.info.features else None
    return builder.info.features.deserialize_example(record, decoders=decoders)


def _process_info(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax  # Only when the caller leaves the host layout to JAX.

        return jax.process_index(), jax.process_count()
    return process_index, process_count


# ----------------------------------------------------------------------------------------------
# Per-example stages (graph functions).


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
    if config.audio_frontend not in AUDIO_FRONTENDS:
        raise ValueError(
            f"unknown audio_frontend {config.audio_frontend!r}; expected one of {AUDIO_FRONTENDS}"
        )
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


def _example_seed(seed: int, process_index: int, position: tf.Tensor) -> tf.Tensor:
    """int64 `[2]`: the stateless seed of stream element `position` of this host."""
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


def eval_example(example: Mapping[str, tf.Tensor], config: InputConfig) -> dict[str, tf.Tensor]:
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


# ----------------------------------------------------------------------------------------------
# Batches.


# A training batch without one valid row takes its rows from the next batch that has one; this
# many batches in a row without any means the data is broken, not unlucky.
MAX_BATCHES_WITHOUT_A_VALID_ROW = 10


class CorruptDataError(UserError):
    """No valid record within `MAX_BATCHES_WITHOUT_A_VALID_ROW` batches of a training stream."""


class HostBatches(Iterator[dict[str, np.ndarray]]):
    """Per-host NumPy batches; counts the corrupt records it met.

    A corrupt record keeps its slot in the stream (see `marking_corrupt_records`), so batch k
    always holds stream elements `[k * B, (k + 1) * B)` and resuming at a step stays exact. In a
    training batch the row of a corrupt record is replaced by a copy of a valid row of the same
    batch (of the next batch holding one if none is valid); in an evaluation batch it is masked
    out (mask False, index -1). The look-ahead for a valid row is bounded
    (`MAX_BATCHES_WITHOUT_A_VALID_ROW`): data that is corrupt throughout raises
    `CorruptDataError` instead of reading (and holding) the stream forever.

    Attributes:
      skipped_records: corrupt records (failed to parse or decode) met in the batches given so far.
      records_per_epoch: records this host reads per pass over its shard.
      num_batches: batches of an evaluation pass (equal on every host); None when endless.
    """

    def __init__(
        self,
        dataset: tf.data.Dataset,
        *,
        batch_size_per_host: int,
        process_index: int,
        process_count: int,
        start_step: int,
        records_per_epoch: int,
        num_batches: int | None = None,
        name: str = "the dataset",
    ):
        self._iterator = dataset.as_numpy_iterator()
        self._element_spec = dataset.element_spec
        self._name = name
        self._batch_size = batch_size_per_host
        self._process_index = process_index
        self._process_count = process_count
        self._step = start_step
        self._lookahead: list[dict[str, np.ndarray]] = []
        self.skipped_records = 0
        self.records_per_epoch = records_per_epoch
        self.num_batches = num_batches
        self._emitted = 0

    def __next__(self) -> dict[str, np.ndarray]:
        if self.num_batches is not None:
            return self._next_eval_batch()
        batch = self._lookahead.pop(0) if self._lookahead else next(self._iterator)
        batch.pop("_position")
        valid = batch.pop("_valid")
        if not valid.all():
            self.skipped_records += int(np.sum(~valid))
            self._replace_corrupt_rows(batch, valid)
        batch["index"] = self._indices()
        self._step += 1
        return batch

    def _indices(self) -> np.ndarray:
        """int64 `[B]`: the global sample indices of this host's rows of batch `self._step`."""
        global_batch = self._batch_size * self._process_count
        return (
            self._step * global_batch
            + self._process_index * self._batch_size
            + np.arange(self._batch_size)
        ).astype(np.int64)

    def stand_in_batch(self) -> dict[str, np.ndarray]:
        """A training batch of zeros, shaped like this stream's, with the indices of the next one.

        What a host whose stream failed feeds its devices for the few steps until every host of
        the job has learned of the failure and all stop together (`stica_jax.loop.ShardBatches`):
        the other hosts' steps have collectives this host must join, so it cannot just stop. Those
        steps are never kept. Reads nothing from the stream.
        """
        batch = {
            key: np.zeros(spec.shape, spec.dtype.as_numpy_dtype)
            for key, spec in self._element_spec.items()
            if not key.startswith("_")
        }
        batch["index"] = self._indices()
        return batch

    def _replace_corrupt_rows(self, batch: dict[str, np.ndarray], valid: np.ndarray) -> None:
        """Rows of corrupt records ← valid rows, in order, cycling: a pure function of the stream."""
        donor_batch, donor_valid, ahead = batch, valid, 0
        while not donor_valid.any():
            if ahead == len(self._lookahead):
                if ahead + 1 >= MAX_BATCHES_WITHOUT_A_VALID_ROW:
                    failed = self.skipped_records + sum(
                        int(np.sum(~b["_valid"])) for b in self._lookahead
                    )
                    raise CorruptDataError(
                        f"{self._name}: no readable record in {ahead + 1} consecutive batches "
                        f"of {self._batch_size} ({failed} records failed to parse or decode, "
                        f"from step {self._step} on); the prepared data is corrupt: prepare "
                        "it again"
                    )
                self._lookahead.append(next(self._iterator))
            donor_batch = self._lookahead[ahead]
            donor_valid = donor_batch["_valid"]
            ahead += 1
        corrupt, donors = np.flatnonzero(~valid), np.flatnonzero(donor_valid)
        donors = donors[np.arange(len(corrupt)) % len(donors)]
        for key in batch:
            batch[key] = batch[key].copy()  # as_numpy_iterator's arrays are read-only views
            batch[key][corrupt] = donor_batch[key][donors]

    def _next_eval_batch(self) -> dict[str, np.ndarray]:
        if self._emitted >= self.num_batches:
            raise StopIteration
        try:
            batch = next(self._iterator)
            self._template = dict(batch)
        except StopIteration:
            if not hasattr(self, "_template"):
                raise RuntimeError("this host read no evaluation example") from None
            batch = {key: value[:0] for key, value in self._template.items()}
        positions = batch.pop("_position")
        valid = batch.pop("_valid")
        self.skipped_records += int(np.sum(~valid))
        real = len(positions)
        padded = {
            key: np.concatenate(
                [value, np.zeros((self._batch_size - real,) + value.shape[1:], value.dtype)]
            )
            for key, value in batch.items()
        }
        padded["mask"] = np.concatenate([valid, np.zeros(self._batch_size - real, bool)])
        padded["index"] = np.concatenate(
            [np.where(valid, positions, -1), np.full(self._batch_size - real, -1)]
        ).astype(np.int64)
        self._emitted += 1
        return padded


def marking_corrupt_records(
    records: tf.data.Dataset, process, *, num_parallel_calls: int = 0
) -> tf.data.Dataset:
    """`records.map(process)` in parallel and in order, each output with a bool `_valid`.

    An element `process` fails on (unparsable record, undecodable JPEG) becomes a placeholder of
    zeros with `_valid` False instead of being dropped: later elements keep their positions, so
    resumption by step stays exact. Each element is mapped inside its own one-element dataset so
    that `ignore_errors` covers only that element's parsing and decoding: an error of the reader
    itself (or its shutdown) still surfaces instead of being skipped forever. `HostBatches` counts
    and replaces the placeholders.
    """

    def process_one(position: tf.Tensor, record: tf.Tensor) -> tf.data.Dataset:
        processed = (
            tf.data.Dataset.from_tensors((position, record))
            .map(process)
            .ignore_errors(log_warning=True)
            .map(lambda outputs: {**outputs, "_valid": tf.constant(True)})
        )
        zeros = tf.nest.map_structure(_zeros_of_spec, processed.element_spec)
        placeholder = tf.data.Dataset.from_tensors(
            {**zeros, "_position": position, "_valid": tf.constant(False)}
        )
        return processed.concatenate(placeholder).take(1)

    parallel = num_parallel_calls or cpu_cores()
    return records.interleave(
        record_stream.plain_function(process_one),
        cycle_length=parallel,
        block_length=1,
        num_parallel_calls=parallel,
        deterministic=True,
    )


def cpu_cores() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one (`taskset`, a
    cpuset), not the machine's count. The default of every "one per core" of the data code."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _zeros_of_spec(spec: tf.TensorSpec) -> tf.Tensor:
    if not spec.shape.is_fully_defined():
        raise ValueError(f"a corrupt record's placeholder needs static output shapes, got {spec}")
    return tf.zeros(spec.shape, spec.dtype)


def _dataset_options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = True
    return options


def _training_batches(
    example_fn,
    config: Any,
    *,
    split: str,
    data_dir: str | None,
    dataset: PreparedDataset | None,
    batch_size_per_host: int,
    seed: int,
    process_index: int | None,
    process_count: int | None,
    start_step: int,
) -> HostBatches:
    config = InputConfig.from_any(config)
    process_index, process_count = _process_info(process_index, process_count)
    builder = _builder(config, data_dir, dataset)
    records = _host_records(builder, split, config, process_index, process_count)
    start_position = start_step * batch_size_per_host
    stream = record_stream.training_records(
        records,
        seed=seed,
        process_index=process_index,
        group_size=config.group_size,
        start_position=start_position,
    )

    def process(position: tf.Tensor, record: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = example_fn(
            _parse(builder, record), _example_seed(seed, process_index, position), config
        )
        outputs["_position"] = position
        return outputs

    dataset = (
        marking_corrupt_records(
            stream.enumerate(start=start_position),
            process,
            num_parallel_calls=config.num_parallel_calls,
        )
        .batch(batch_size_per_host, drop_remainder=True)
        .prefetch(config.prefetch_batches)
        .with_options(_dataset_options())
    )
    return HostBatches(
        dataset,
        batch_size_per_host=batch_size_per_host,
        process_index=process_index,
        process_count=process_count,
        start_step=start_step,
        records_per_epoch=records.num_records,
        name=f"dataset {config.dataset!r} ({split})",
    )


def make_pretrain_dataset(
    config: Any,
    *,
    split: str,
    data_dir: str | None = None,
    dataset: PreparedDataset | None = None,
    batch_size_per_host: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    start_step: int = 0,
) -> HostBatches:
    """Endless pretraining batches: video1, video2 `[B, T, S, S, 3]`, audio `[B, F, T_spec, 1]`,
    index `[B]`, label `[B]` (see module docstring).

    Args:
      config: `InputConfig`, or any config holding some of its fields (ConfigDict, dataclass).
      split: TFDS split expression of `config.dataset`, e.g. "train", "fold2+fold3", "train[:90%]".
      data_dir: the TFDS data dir the dataset was prepared into; None: `$TFDS_DATA_DIR`, else
        `~/tensorflow_datasets` (`data_pipeline.data_dir.resolve_data_dir`).
      dataset: `config.dataset` already opened (`datasets.open_dataset`); then `data_dir` is not
        read. Callers that build several pipelines of one dataset open it once this way.
      batch_size_per_host: B.
      seed: equal seeds (and host layouts) give equal batches.
      process_index, process_count: this host and the host count; None means JAX's.
      start_step: resume here: the batches equal those a run from step 0 gives from this step on
        (without reading the skipped part of the epoch).
    """
    return _training_batches(
        pretrain_example,
        config,
        split=split,
        data_dir=data_dir,
        dataset=dataset,
        batch_size_per_host=batch_size_per_host,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        start_step=start_step,
    )


def make_supervised_dataset(
    config: Any,
    *,
    split: str,
    data_dir: str | None = None,
    dataset: PreparedDataset | None = None,
    batch_size_per_host: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    start_step: int = 0,
) -> HostBatches:
    """Endless fine-tuning batches: video `[B, T, S, S, 3]` (one augmented view of a random window),
    label `[B]`, index `[B]`. Arguments as `make_pretrain_dataset`. Each visit of a video draws a
    new window, so "10 clips per video per epoch" is 10 × `records_per_epoch` samples.
    """
    return _training_batches(
        supervised_example,
        config,
        split=split,
        data_dir=data_dir,
        dataset=dataset,
        batch_size_per_host=batch_size_per_host,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        start_step=start_step,
    )


def _eval_batches(
    example_fn,
    config: Any,
    *,
    split: str,
    data_dir: str | None,
    dataset: PreparedDataset | None,
    batch_size_per_host: int,
    process_index: int | None,
    process_count: int | None,
) -> HostBatches:
    config = InputConfig.from_any(config)
    process_index, process_count = _process_info(process_index, process_count)
    builder = _builder(config, data_dir, dataset)
    all_hosts = [
        _host_records(builder, split, config, host, process_count) for host in range(process_count)
    ]
    records = all_hosts[process_index]
    num_batches = max(math.ceil(host.num_records / batch_size_per_host) for host in all_hosts)

    def process(position: tf.Tensor, record: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = example_fn(_parse(builder, record), config)
        outputs["_position"] = position
        return outputs

    dataset = (
        record_stream.single_pass_records(records, group_size=config.group_size)
        .enumerate()
        .apply(
            lambda records: marking_corrupt_records(
                records, process, num_parallel_calls=config.num_parallel_calls
            )
        )
        .batch(batch_size_per_host)
        .prefetch(config.prefetch_batches)
        .with_options(_dataset_options())
    )
    return HostBatches(
        dataset,
        batch_size_per_host=batch_size_per_host,
        process_index=process_index,
        process_count=process_count,
        start_step=0,
        records_per_epoch=records.num_records,
        num_batches=num_batches,
    )


def make_eval_dataset(
    config: Any,
    *,
    split: str,
    data_dir: str | None = None,
    dataset: PreparedDataset | None = None,
    batch_size_per_host: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> HostBatches:
    """One pass of video evaluation batches: video `[B, N * C, T, S, S, 3]`, label, mask, index.

    Every host yields `num_batches` batches (padding rows have mask False, index -1), so a
    multi-host eval loop stays in step. `data_dir`, `dataset` as in `make_pretrain_dataset`.
    """
    return _eval_batches(
        eval_example,
        config,
        split=split,
        data_dir=data_dir,
        dataset=dataset,
        batch_size_per_host=batch_size_per_host,
        process_index=process_index,
        process_count=process_count,
    )


def make_audio_eval_dataset(
    config: Any,
    *,
    split: str,
    data_dir: str | None = None,
    dataset: PreparedDataset | None = None,
    batch_size_per_host: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> HostBatches:
    """One pass of audio sub-clip batches: audio `[B, n_sub, F, T_sub, 1]`, label, mask, index.

    n_sub = `audio_eval_subclips` windows of `audio_eval_seconds`, evenly spaced over each clip.
    `data_dir`, `dataset` as in `make_pretrain_dataset`.
    """
    return _eval_batches(
        audio_eval_example,
        config,
        split=split,
        data_dir=data_dir,
        dataset=dataset,
        batch_size_per_host=batch_size_per_host,
        process_index=process_index,
        process_count=process_count,
    )
