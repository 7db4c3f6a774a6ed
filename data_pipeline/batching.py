"""Per-host NumPy batches: an endless training stream, or one evaluation pass.

A corrupt record keeps its slot in the stream (`records.marking_corrupt_records`), so batch k
always holds stream elements `[k * B, (k + 1) * B)` and resuming at a step stays exact. What
becomes of a corrupt record's row is where training and evaluation differ:
- `TrainingBatches`: the row is replaced by a copy of a valid row of the same batch (of the next
  batch holding one if none is valid). The look-ahead for a valid row is bounded
  (`MAX_BATCHES_WITHOUT_A_VALID_ROW`): data that is corrupt throughout raises `CorruptDataError`
  instead of reading (and holding) the stream forever.
- `EvaluationBatches`: the row is masked out (mask False, index -1), and every host yields the
  same number of batches, padded, so a multi-host evaluation loop stays in step.
"""

from collections.abc import Iterator

import numpy as np

from data_pipeline.errors import UserError
from data_pipeline.tensorflow_cpu import tf

# A training batch without one valid row takes its rows from the next batch that has one; this
# many batches in a row without any means the data is broken, not unlucky.
MAX_BATCHES_WITHOUT_A_VALID_ROW = 10


class CorruptDataError(UserError):
    """No valid record within `MAX_BATCHES_WITHOUT_A_VALID_ROW` batches of a training stream."""


class HostBatches(Iterator[dict[str, np.ndarray]]):
    """Per-host NumPy batches of a dataset whose elements carry `_position` and `_valid`; counts
    the corrupt records it met.

    Attributes:
      skipped_records: corrupt records (failed to parse or decode) met in the batches given so far.
      records_per_epoch: records this host reads per pass over its shard.
    """

    def __init__(
        self,
        dataset: tf.data.Dataset,
        *,
        batch_size_per_host: int,
        records_per_epoch: int,
        name: str = "the dataset",
    ):
        self._iterator = dataset.as_numpy_iterator()
        self._name = name
        self._batch_size = batch_size_per_host
        self.skipped_records = 0
        self.records_per_epoch = records_per_epoch


class TrainingBatches(HostBatches):
    """Endless training batches from step `start_step`; `index` is each row's global sample index,
    `step * B * process_count + process_index * B + i`. Corrupt rows are replaced by valid ones."""

    def __init__(
        self,
        dataset: tf.data.Dataset,
        *,
        batch_size_per_host: int,
        process_index: int,
        process_count: int,
        start_step: int,
        records_per_epoch: int,
        name: str = "the dataset",
    ):
        super().__init__(
            dataset,
            batch_size_per_host=batch_size_per_host,
            records_per_epoch=records_per_epoch,
            name=name,
        )
        self._element_spec = dataset.element_spec
        self._process_index = process_index
        self._process_count = process_count
        self._step = start_step
        self._lookahead: list[dict[str, np.ndarray]] = []

    def __next__(self) -> dict[str, np.ndarray]:
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


class EvaluationBatches(HostBatches):
    """One pass of `num_batches` evaluation batches of B rows, with `mask` (False on padding and
    corrupt rows) and `index` (the host's example number; -1 where masked). A host whose records
    end early pads with empty batches, so every host yields `num_batches`.

    Attributes:
      num_batches: batches of the pass (equal on every host).
    """

    def __init__(
        self,
        dataset: tf.data.Dataset,
        *,
        batch_size_per_host: int,
        records_per_epoch: int,
        num_batches: int,
        name: str = "the dataset",
    ):
        super().__init__(
            dataset,
            batch_size_per_host=batch_size_per_host,
            records_per_epoch=records_per_epoch,
            name=name,
        )
        self.num_batches = num_batches
        self._emitted = 0
        self._template: dict[str, np.ndarray] | None = None

    def __next__(self) -> dict[str, np.ndarray]:
        if self._emitted >= self.num_batches:
            raise StopIteration
        try:
            batch = next(self._iterator)
            self._template = dict(batch)
        except StopIteration:
            if self._template is None:
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
