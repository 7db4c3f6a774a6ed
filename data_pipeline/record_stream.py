"""Which serialized records a host reads, in which order: sharding, shuffling and resumption.

A split's TFRecord files are cut into chunks of at most `chunk_size` consecutive records; chunk c
belongs to host `c % process_count`, so hosts read disjoint data. A host's training stream is
epoch after epoch of its chunks in a fresh random order (numpy, seeded by (seed, host, epoch)),
read `group_size` chunks at a time with the records of a group interleaved round-robin: parallel
file reads, and the mixing a shuffle buffer would give, without a buffer whose state would have
to be replayed. Element j of the stream is therefore a pure function of (seed, host, j): to
resume at j the reader skips whole epochs and groups by arithmetic and at most one group's
records by reading.

TFDS already shuffled the examples when it wrote the files, so consecutive records are unrelated.

A chunk always yields `take` elements. A corrupt or truncated file (a CRC or framing error of
TFRecord) cannot be read past the damage, so the rest of the chunk from the bad record on is
replaced by `LOST_RECORD` placeholders, reported in one line naming the file; they fail to
parse downstream, where they are counted and replaced like any corrupt record. Every element
keeps its position, so resuming at a step still reads the same batches.
"""

import dataclasses
import sys
from collections.abc import Iterator

import numpy as np

from data_pipeline.tensorflow_cpu import tf


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Records `[skip, skip + take)` of file `file_index`."""

    file_index: int
    skip: int
    take: int


@dataclasses.dataclass(frozen=True)
class HostRecords:
    """The chunks one host reads; `filenames` is shared by every host."""

    filenames: tuple[str, ...]
    chunks: tuple[Chunk, ...]

    @property
    def num_records(self) -> int:
        return sum(chunk.take for chunk in self.chunks)


def host_records(
    file_instructions, *, chunk_size: int, process_index: int, process_count: int
) -> HostRecords:
    """Chunks of this host from TFDS `file_instructions` (of a split, or split expression).

    Raises:
      ValueError: when the split has fewer chunks than hosts (some host would read nothing).
    """
    filenames, chunks = [], []
    for instruction in file_instructions:
        if not instruction.take:
            continue
        filenames.append(instruction.filename)
        for start in range(0, instruction.take, chunk_size):
            take = min(chunk_size, instruction.take - start)
            chunks.append(Chunk(len(filenames) - 1, instruction.skip + start, take))
    if len(chunks) < process_count:
        raise ValueError(
            f"{len(chunks)} chunks of <= {chunk_size} records cannot feed {process_count} hosts; "
            "lower `chunk_size` or use a larger split."
        )
    return HostRecords(tuple(filenames), tuple(chunks[process_index::process_count]))


def epoch_groups(
    records: HostRecords, *, seed: int, process_index: int, epoch: int, group_size: int
) -> list[list[Chunk]]:
    """The host's chunks of `epoch` in their random order, `group_size` per group."""
    order = np.random.default_rng([seed, process_index, epoch, 0x5EED]).permutation(
        len(records.chunks)
    )
    chunks = [records.chunks[i] for i in order]
    return [chunks[start : start + group_size] for start in range(0, len(chunks), group_size)]


# The slot of a record that could not be read: an empty string, which is no serialized example.
LOST_RECORD = b""


def read_chunk(
    filenames: tf.Tensor, file_index: tf.Tensor, skip: tf.Tensor, take: tf.Tensor
) -> tf.data.Dataset:
    """Records `[skip, skip + take)` of `filenames[file_index]`: always `take` elements.

    TFRecord's reader gives up on a file at its first CRC or framing error (`DataLossError`);
    the records of the chunk from there on become `LOST_RECORD`, and one line on stderr names
    the file, the first lost record and how many of the chunk were lost.
    """
    filename = tf.gather(filenames, file_index)
    read = (
        tf.data.TFRecordDataset(filename, buffer_size=1 << 20)
        .skip(skip)
        .take(take)
        # The reader moves past a file after a DataLossError, so this ends the chunk's reading.
        .ignore_errors()
        .map(lambda record: (record, tf.constant(True)))
    )
    lost = tf.data.Dataset.from_tensors((tf.constant(LOST_RECORD), tf.constant(False))).repeat()

    def report_first_lost(previous_read, element):
        index, (record, was_read) = element
        first_lost = tf.logical_and(previous_read, tf.logical_not(was_read))

        def report():
            printed = tf.print(
                "data loss:",
                filename,
                "is unreadable (corrupt or truncated TFRecord) from record",
                skip + index,
                "on; skipping",
                take - index,
                "records of it",
                output_stream=sys.stderr,
            )
            with tf.control_dependencies([printed]):
                return tf.identity(record)

        return was_read, tf.cond(first_lost, report, lambda: record)

    return read.concatenate(lost).take(take).enumerate().scan(tf.constant(True), report_first_lost)


def _read_chunks(filenames: tf.Tensor, group_size: int, deterministic: bool = True):
    """Maps a group (file_index, skip, take `[G]` each) to its records, interleaved round-robin."""

    def read_one_chunk(file_index, skip, take) -> tf.data.Dataset:
        return read_chunk(filenames, file_index, skip, take)

    def read_group(file_index: tf.Tensor, skip: tf.Tensor, take: tf.Tensor) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((file_index, skip, take)).interleave(
            read_one_chunk,
            cycle_length=group_size,
            block_length=1,
            num_parallel_calls=group_size,
            deterministic=deterministic,
        )

    return plain_function(read_group)


def plain_function(function):
    """`function` for tf.data as written, without AutoGraph's rewrite of its Python source.

    The pipeline's functions branch with `tf.cond` and loop over Python values only, so the
    rewrite changes nothing but costs time: it halved the time to build a training pipeline
    (4-5 s → 2 s on these CPUs, identical batches), paid by every run and evaluation pass at
    start-up. Functions that tf.data traces while this one runs (nested datasets) are not
    rewritten either. A Python `if` on a tensor inside one fails at trace time, loudly.
    """
    return tf.autograph.experimental.do_not_convert(function)


def _groups_as_arrays(
    groups: list[list[Chunk]],
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    for group in groups:
        yield (
            np.array([c.file_index for c in group], np.int64),
            np.array([c.skip for c in group], np.int64),
            np.array([c.take for c in group], np.int64),
        )


_GROUP_SIGNATURE = tuple(tf.TensorSpec([None], tf.int64) for _ in range(3))


def training_records(
    records: HostRecords, *, seed: int, process_index: int, group_size: int, start_position: int = 0
) -> tf.data.Dataset:
    """The host's endless, shuffled stream of serialized records, from element `start_position`.

    Returns:
      `tf.data.Dataset` of scalar tf.string; element i equals element `start_position + i` of the
      stream started at 0.
    """
    epoch_size = records.num_records
    start_epoch, position_in_epoch = divmod(start_position, epoch_size)
    first_groups = epoch_groups(
        records, seed=seed, process_index=process_index, epoch=start_epoch, group_size=group_size
    )
    skip_groups = 0
    for group in first_groups:
        size = sum(chunk.take for chunk in group)
        if position_in_epoch < size:
            break
        position_in_epoch -= size
        skip_groups += 1

    def schedule() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        yield from _groups_as_arrays(first_groups[skip_groups:])
        epoch = start_epoch + 1
        while True:
            yield from _groups_as_arrays(
                epoch_groups(
                    records,
                    seed=seed,
                    process_index=process_index,
                    epoch=epoch,
                    group_size=group_size,
                )
            )
            epoch += 1

    filenames = tf.constant(records.filenames)
    groups = tf.data.Dataset.from_generator(schedule, output_signature=_GROUP_SIGNATURE)
    return groups.flat_map(_read_chunks(filenames, group_size)).skip(position_in_epoch)


def single_pass_records(records: HostRecords, *, group_size: int) -> tf.data.Dataset:
    """Every record of the host once, in stored order (evaluation)."""
    groups = [
        list(records.chunks[start : start + group_size])
        for start in range(0, len(records.chunks), group_size)
    ]
    filenames = tf.constant(records.filenames)
    arrays = list(_groups_as_arrays(groups))
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(arrays), output_signature=_GROUP_SIGNATURE
    )
    # Chunks one after another (no round-robin) keep the stored order, so eval outputs are
    # listed in the order of `file_instructions`.
    return dataset.flat_map(
        plain_function(
            lambda file_index, skip, take: tf.data.Dataset.from_tensor_slices(
                (file_index, skip, take)
            ).flat_map(lambda f, s, t: read_chunk(filenames, f, s, t))
        )
    )
