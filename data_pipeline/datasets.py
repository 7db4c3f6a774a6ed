"""Where datasets live, and a prepared dataset opened once.

Every path that reads or writes a dataset (training, the probes, `python -m
data_pipeline.prepare`, AV-digits generation, the benchmarks) finds its TFDS data dir with
`resolve_data_dir` (`data_pipeline.data_dir`, re-exported here), so a dataset is written where
it is later read, and never relative to the current directory.

`open_dataset` opens a prepared dataset once into a `PreparedDataset`: its name, data dir, TFDS
builder, split sizes and class count. The trainer, its evaluators and the input pipeline share
that value instead of opening the builder again.
"""

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from data_pipeline.data_dir import resolve_data_dir
from data_pipeline.errors import UserError

# TFDS (and TensorFlow, which the builders load) only inside the functions that open a dataset:
# the evaluation protocols import this module for `PreparedDataset` before torch, and must load
# neither then (torch's triton, loaded after TensorFlow, segfaults).
if TYPE_CHECKING:
    import tensorflow_datasets as tfds  # For the annotations only (the note above).


class DatasetNotPreparedError(UserError, FileNotFoundError):
    """A dataset that is not in the data dir; the message gives the command that prepares it."""


class SplitNotPreparedError(UserError, KeyError):
    """A split the prepared dataset does not hold: misspelt, or left out at preparation because
    none of its files was usable. The message names the prepared splits and the command."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
    """A prepared TFDS dataset, opened once (`open_dataset`).

    Attributes:
      name: TFDS name[/config], e.g. "av_digits/default", "stica_ucf101/fold1".
      data_dir: the resolved data dir it was opened from (absolute, or a URL).
      builder: its TFDS builder (metadata and record files; `builder.info.features` parses).
      split_sizes: split name → number of examples, e.g. {"train": 1500, "test": 300}.
      num_classes: label count of its `label` feature (None if it has none).
    """

    name: str
    data_dir: str
    builder: "tfds.core.DatasetBuilder"
    split_sizes: Mapping[str, int]
    num_classes: int | None

    def num_examples(self, split: str) -> int:
        """Examples in `split`, any TFDS split expression ("train", "fold2+fold3", "train[:90%]").

        Raises:
          SplitNotPreparedError: a split the dataset does not hold.
        """
        return split_info(self.builder, split).num_examples


def split_info(builder: "tfds.core.DatasetBuilder", split: str):
    """`builder.info.splits[split]` (any TFDS split expression), or a one-line
    `SplitNotPreparedError` naming the splits that were prepared and the command that prepares
    the missing one (`prepare` leaves out a split none of whose files is usable)."""
    try:
        return builder.info.splits[split]
    except (KeyError, ValueError):
        pass
    prepared = sorted(builder.info.splits)
    name = "/".join(builder.info.full_name.split("/")[:-1])  # without the version
    data_dir = os.path.dirname(os.path.dirname(os.fspath(builder.data_dir)))
    if "/" in name:
        data_dir = os.path.dirname(data_dir)
    report = os.path.join(os.fspath(builder.data_dir), "skipped_files.tsv")
    why = (
        f"; a split none of whose files was usable is left out at preparation ({report} gives "
        "each file's reason)"
        if os.path.exists(report)
        else ""
    )
    raise SplitNotPreparedError(
        f"dataset {name!r} under {data_dir} has no split {split!r} (prepared: "
        f"{', '.join(prepared)}){why}; {_prepare_hint(name, data_dir)}"
    ) from None


def open_dataset(name: str, data_dir: str | None = None) -> PreparedDataset:
    """Opens the prepared dataset `name` (TFDS name[/config]) under `resolve_data_dir(data_dir)`.

    Raises:
      DatasetNotPreparedError: it is not there; the message says how to prepare it.
    """
    data_dir = resolve_data_dir(data_dir)
    builder = load_builder(name, data_dir)
    features = builder.info.features
    return PreparedDataset(
        name=name,
        data_dir=data_dir,
        builder=builder,
        split_sizes={split: info.num_examples for split, info in builder.info.splits.items()},
        num_classes=features["label"].num_classes if "label" in features else None,
    )


def load_builder(name: str, data_dir: str | None = None) -> "tfds.core.DatasetBuilder":
    """The prepared TFDS builder `name` (TFDS name[/config]) under `resolve_data_dir(data_dir)`.

    Configs made at preparation time (AV-digits with custom sizes, another short side) are not in
    the code's list: they are read from the written dataset's metadata.

    Raises:
      DatasetNotPreparedError: it is not there; the message says how to prepare it.
    """
    # Late: TFDS, and TensorFlow through the builders (the note at the top).
    import tensorflow_datasets as tfds

    from data_pipeline import builders  # noqa: F401 - registers the stica_jax builders.

    data_dir = resolve_data_dir(data_dir)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except (ValueError, tfds.core.registered.DatasetNotFoundError):
        directory = _latest_version_directory(name, data_dir)
        if directory is None:
            raise DatasetNotPreparedError(not_prepared_message(name, data_dir)) from None
        builder = tfds.builder_from_directory(directory)
    if not builder.is_prepared():
        raise DatasetNotPreparedError(not_prepared_message(name, data_dir))
    return builder


_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)/?$")


def _latest_version_directory(name: str, data_dir: str) -> str | None:
    """`data_dir/name/<highest version>`, or None when no version of `name` was written."""
    from data_pipeline.tensorflow_cpu import tf  # Late: TensorFlow (the note at the top).

    root = tf.io.gfile.join(data_dir, *name.split("/"))
    if not tf.io.gfile.isdir(root):
        return None
    versions = [m for m in map(_VERSION.match, tf.io.gfile.listdir(root)) if m]  # not incomplete.*
    if not versions:
        return None
    latest = max(versions, key=lambda m: tuple(int(part) for part in m.groups()))
    return tf.io.gfile.join(root, latest.group(0).strip("/"))


def not_prepared_message(name: str, data_dir: str) -> str:
    """One line: `name` is not under `data_dir`, and the command that prepares it."""
    from data_pipeline.builders import BUILDERS  # Late: TensorFlow (the note at the top).

    command_names = {builder.name: command_name for command_name, builder in BUILDERS.items()}
    base, _, config = name.partition("/")
    head = f"dataset {name!r} is not prepared under {data_dir}"
    if base not in command_names:
        return (
            f"{head}, and no stica_jax builder makes it (known: {', '.join(sorted(command_names))})"
        )
    if base == "av_digits" and config not in ("", "default"):
        return (
            f"{head}; generate it with data_pipeline.av_digits.ensure_prepared(data_dir, spec) "
            "(the trainer does so for the spec in config.av_digits)"
        )
    return f"{head}; {_prepare_hint(name, data_dir)}"


def _prepare_hint(name: str, data_dir: str) -> str:
    """ "prepare it with: python -m stica_jax.prepare …" for a stica_jax dataset `name`."""
    from data_pipeline.builders import BUILDERS  # Late: TensorFlow (the note at the top).

    command_names = {builder.name: command_name for command_name, builder in BUILDERS.items()}
    base = name.partition("/")[0]
    if base not in command_names:
        return "it is not a stica_jax dataset"
    manual = "" if base == "av_digits" else " --manual_dir=DIR_WITH_THE_DOWNLOADED_FILES"
    return (
        f"prepare it with: python -m stica_jax.prepare {command_names[base]}{manual} "
        f"--data_dir={data_dir}"
    )
