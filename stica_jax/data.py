"""The prepared datasets of a run, each opened once from its config.

A run reads its datasets from `config.data_dir`, resolved by `data_pipeline.data_dir.
resolve_data_dir` (the value; else $TFDS_DATA_DIR; else ~/tensorflow_datasets). Each dataset is
opened once into a `PreparedDataset` (name, data dir, TFDS builder, split sizes, class count),
which the training loop, the input pipeline and the evaluators share:

    train_data = data.open_run_dataset(config, config.input.dataset)
    eval_data = data.open_eval_dataset(config, train_data)  # None: no online eval
    pipeline.make_dataset(config.input, "pretrain", split=..., dataset=train_data, ...)
    probe.probe_accuracies(config, graphdef, states, eval_data, mesh)

AV-digits, the generated demo dataset (spec §12), is written on first use; any other dataset
that is missing raises `DatasetNotPreparedError`, whose one line gives the command that prepares
it.
"""

import jax
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from data_pipeline import av_digits
from data_pipeline.data_dir import resolve_data_dir
from data_pipeline.datasets import (
    DatasetNotPreparedError,
    PreparedDataset,
    SplitNotPreparedError,
    open_dataset,
)

__all__ = [
    "DatasetNotPreparedError",
    "PreparedDataset",
    "av_digits_spec",
    "open_eval_dataset",
    "open_run_dataset",
    "resolve_av_digits",
]


def av_digits_spec(config: ml_collections.ConfigDict):
    """The `AvDigitsSpec` of a run's `config.av_digits` (the defaults when absent)."""
    return av_digits.AvDigitsSpec(**config.get("av_digits", {}))


def resolve_av_digits(config: ml_collections.ConfigDict) -> None:
    """Point `av_digits` datasets at the TFDS config of `config.av_digits` (its sizes)."""
    if "av_digits" not in config:
        return
    name = f"av_digits/{av_digits_spec(config).config_name()}"
    for section in (config.input, config.eval):
        if section.dataset == "av_digits":
            section.dataset = name


def open_run_dataset(config: ml_collections.ConfigDict, name: str) -> PreparedDataset:
    """Dataset `name` (TFDS name[/config]) of the run, opened under `config.data_dir`.

    The AV-digits of `config.av_digits` is generated first when absent, by process 0 while the
    other processes wait.

    Raises:
      DatasetNotPreparedError: any other dataset that is not prepared (the message says how).
    """
    data_dir = resolve_data_dir(config.data_dir)
    if name.split("/")[0] == "av_digits":
        spec = av_digits_spec(config)
        if name in ("av_digits", f"av_digits/{spec.config_name()}"):
            if jax.process_index() == 0:
                av_digits.ensure_prepared(data_dir, spec)
            if jax.process_count() > 1:
                multihost_utils.sync_global_devices("av_digits prepared")
    return open_dataset(name, data_dir)


def open_eval_dataset(
    config: ml_collections.ConfigDict, train: PreparedDataset
) -> PreparedDataset | None:
    """`config.eval.dataset`, opened once: `train` itself when it is the same dataset.

    None when `eval.method` is "none", or (with a warning) when the dataset or one of its two
    splits is not prepared: online evaluation is then skipped, training is not.
    """
    if config.eval.method == "none":
        return None
    try:
        dataset = (
            train
            if config.eval.dataset == train.name
            else open_run_dataset(config, config.eval.dataset)
        )
        for split in (config.eval.train_split, config.eval.test_split):
            dataset.num_examples(split)
    except (DatasetNotPreparedError, SplitNotPreparedError) as error:
        logging.warning("online eval skipped: %s", error)
        return None
    return dataset
