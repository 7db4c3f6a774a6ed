"""The tf.data audio-video input pipeline: prepared TFDS records → per-host NumPy batches.

`make_dataset(config, purpose, ...)` is the one way to build it. Its stages (DMVR's phases), one
module each:

  read, parse    `records` (which records: `record_stream`'s host shard, shuffle, resume; parse
                 the TFDS features, frames left JPEG-encoded; corrupt records marked, not dropped)
  sample, decode, preprocess
                 `stages` (one time window per clip, only its frames decoded; `augment` per view,
                 clip-consistent; `audio_features`)
  postprocess    `batching` (batch → NumPy; corrupt rows replaced or masked)

configured by `input_config.InputConfig`.

Purposes and their per-host batches (B = `batch_size_per_host`, T = `num_frames`, S = `crop_size`,
F = `num_mel_bins`, T_spec = `InputConfig.spectrogram_frames`, by the audio front end):

  "pretrain":   video1, video2 float32 [B, T, S, S, 3]; audio float32 [B, F, T_spec, 1];
                index int64 [B]; label int32 [B]
  "supervised": video float32 [B, T, S, S, 3]; index int64 [B]; label int32 [B]
  "video_eval": video float32 [B, N * C, T, S, S, 3] (clip-major: view v is clip v // C, spatial
                crop v % C); label int32 [B]; mask bool [B]; index int64 [B]
  "audio_eval": audio float32 [B, n_sub, F, T_sub, 1]; label int32 [B]; mask bool [B];
                index int64 [B]

`index` of a training batch is the sample's position in the global stream,
`step * B * process_count + process_index * B + i`; of an eval batch, the host's example number.
Videos are normalised `(x / 255 - 0.45) / 0.225`; audio is `log(mel power + 1e-6)` ("stica"
front end) or the official loader's `logfbank` ("official"; `audio_features`).
"""

import math
from typing import Any

from data_pipeline import record_stream, stages
from data_pipeline.batching import EvaluationBatches, HostBatches, TrainingBatches
from data_pipeline.datasets import PreparedDataset
from data_pipeline.input_config import InputConfig
from data_pipeline.records import (
    dataset_builder,
    marking_corrupt_records,
    parse,
    split_records,
)
from data_pipeline.tensorflow_cpu import tf

# purpose → its per-example stage. Training streams are endless, seeded and resumable; an
# evaluation pass reads each example of the split once, deterministically.
TRAINING_STAGES = {"pretrain": stages.pretrain_example, "supervised": stages.supervised_example}
EVALUATION_STAGES = {
    "video_eval": stages.video_eval_example,
    "audio_eval": stages.audio_eval_example,
}
PURPOSES = (*TRAINING_STAGES, *EVALUATION_STAGES)


def make_dataset(
    config: Any,
    purpose: str,
    *,
    split: str,
    batch_size_per_host: int,
    data_dir: str | None = None,
    dataset: PreparedDataset | None = None,
    seed: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    start_step: int = 0,
) -> HostBatches:
    """This host's batches of `config.dataset`'s `split` for `purpose` (see the module docstring).

    "pretrain" and "supervised" give endless `TrainingBatches`; "supervised" is one augmented view
    of a random window, drawn anew at each visit of a video, so "10 clips per video per epoch" is
    10 × `records_per_epoch` samples. "video_eval" (`eval_clips` × `eval_crops` views) and
    "audio_eval" (`audio_eval_subclips` windows of `audio_eval_seconds`, evenly spaced) give one
    pass of `EvaluationBatches`: every host yields `num_batches` batches (padding rows have mask
    False, index -1), so a multi-host eval loop stays in step.

    Args:
      config: `InputConfig`, or any config holding some of its fields (ConfigDict, dataclass).
      purpose: one of `PURPOSES`.
      split: TFDS split expression of `config.dataset`, e.g. "train", "fold2+fold3", "train[:90%]".
      batch_size_per_host: B.
      data_dir: the TFDS data dir the dataset was prepared into; None: `$TFDS_DATA_DIR`, else
        `~/tensorflow_datasets` (`data_pipeline.data_dir.resolve_data_dir`).
      dataset: `config.dataset` already opened (`datasets.open_dataset`); then `data_dir` is not
        read. Callers that build several pipelines of one dataset open it once this way.
      seed: training only (required there): equal seeds (and host layouts) give equal batches.
      process_index, process_count: this host and the host count; None means JAX's.
      start_step: training only: resume here: the batches equal those a run from step 0 gives
        from this step on (without reading the skipped part of the epoch).
    """
    if purpose in TRAINING_STAGES and seed is None:
        raise ValueError(f"a {purpose!r} dataset needs a seed")
    if purpose in EVALUATION_STAGES and (seed is not None or start_step):
        raise ValueError(
            f"a {purpose!r} pass reads every example once, in order: it takes no seed or start_step"
        )
    if purpose not in TRAINING_STAGES and purpose not in EVALUATION_STAGES:
        raise ValueError(f"unknown dataset purpose {purpose!r}; expected one of {PURPOSES}")
    config = InputConfig.from_any(config)
    process_index, process_count = _process_info(process_index, process_count)
    builder = dataset_builder(config, data_dir, dataset)
    if purpose in TRAINING_STAGES:
        return _training_batches(
            TRAINING_STAGES[purpose],
            config,
            builder,
            split,
            batch_size_per_host,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            start_step=start_step,
        )
    return _evaluation_batches(
        EVALUATION_STAGES[purpose],
        config,
        builder,
        split,
        batch_size_per_host,
        process_index=process_index,
        process_count=process_count,
    )


def _process_info(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax  # Only when the caller leaves the host layout to JAX.

        return jax.process_index(), jax.process_count()
    return process_index, process_count


def _dataset_options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    # No autotuning: every parallelism and buffer of these pipelines is a fixed number
    # (`InputConfig`), so there is nothing to tune, and while autotuning runs, freeing an
    # iterator waits for its model thread: 1-14 s at the end of every run and evaluation pass
    # on 2 busy cores (TF 2.21; ~1 s with it off, the same batches).
    options.autotune.enabled = False
    return options


def _training_batches(
    example_fn,
    config: InputConfig,
    builder: Any,
    split: str,
    batch_size_per_host: int,
    *,
    seed: int,
    process_index: int,
    process_count: int,
    start_step: int,
) -> TrainingBatches:
    records = split_records(builder, split, config, process_index, process_count)
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
            parse(builder, record), stages.example_seed(seed, process_index, position), config
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
    return TrainingBatches(
        dataset,
        batch_size_per_host=batch_size_per_host,
        process_index=process_index,
        process_count=process_count,
        start_step=start_step,
        records_per_epoch=records.num_records,
        name=f"dataset {config.dataset!r} ({split})",
    )


def _evaluation_batches(
    example_fn,
    config: InputConfig,
    builder: Any,
    split: str,
    batch_size_per_host: int,
    *,
    process_index: int,
    process_count: int,
) -> EvaluationBatches:
    all_hosts = [
        split_records(builder, split, config, host, process_count) for host in range(process_count)
    ]
    records = all_hosts[process_index]
    num_batches = max(math.ceil(host.num_records / batch_size_per_host) for host in all_hosts)

    def process(position: tf.Tensor, record: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = example_fn(parse(builder, record), config)
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
    return EvaluationBatches(
        dataset,
        batch_size_per_host=batch_size_per_host,
        records_per_epoch=records.num_records,
        num_batches=num_batches,
    )
