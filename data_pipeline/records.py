"""The read and parse stages: a split's serialized records → parsed features, corrupt ones marked.

Which records a host reads, and in which order, is `record_stream`'s; this module finds them in
a prepared TFDS dataset (`split_records`), parses them (`parse`), and runs the per-example stages
over them so that a record that fails to parse or decode keeps its slot in the stream as a
marked placeholder (`marking_corrupt_records`) instead of being dropped.
"""

import os

import tensorflow_datasets as tfds

from data_pipeline import (
    builders,  # noqa: F401 - registers the stica_jax TFDS builders.
    record_stream,
)
from data_pipeline.datasets import PreparedDataset, load_builder, split_info
from data_pipeline.input_config import InputConfig
from data_pipeline.tensorflow_cpu import tf


def dataset_builder(
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


def split_records(
    builder: tfds.core.DatasetBuilder,
    split: str,
    config: InputConfig,
    process_index: int,
    process_count: int,
) -> record_stream.HostRecords:
    """The chunks of `split` that host `process_index` of `process_count` reads."""
    return record_stream.host_records(
        split_info(builder, split).file_instructions,
        chunk_size=config.chunk_size,
        process_index=process_index,
        process_count=process_count,
    )


def parse(builder: tfds.core.DatasetBuilder, record: tf.Tensor) -> dict[str, tf.Tensor]:
    """Serialized record → features, video left as `[T_total]` JPEG strings."""
    decoders = {"video": tfds.decode.SkipDecoding()} if "video" in builder.info.features else None
    return builder.info.features.deserialize_example(record, decoders=decoders)


def marking_corrupt_records(
    records: tf.data.Dataset, process, *, num_parallel_calls: int = 0
) -> tf.data.Dataset:
    """`records.map(process)` in parallel and in order, each output with a bool `_valid`.

    An element `process` fails on (unparsable record, undecodable JPEG) becomes a placeholder of
    zeros with `_valid` False instead of being dropped: later elements keep their positions, so
    resumption by step stays exact. Each element is mapped inside its own one-element dataset so
    that `ignore_errors` covers only that element's parsing and decoding: an error of the reader
    itself (or its shutdown) still surfaces instead of being skipped forever. The batches
    (`batching.TrainingBatches`, `batching.EvaluationBatches`) count and replace the placeholders.
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
