"""The folds of an evaluation protocol: which to run, and each one's seed.

Shared by every protocol that runs folds (audio classification, fine-tuning, linear probing);
what a fold trains and tests on is the protocol's own (`audio.protocol_splits`,
`fold_dataset`).
"""

import numpy as np

from stica_jax.errors import ConfigError


def parse_folds(folds: str | int | tuple | list) -> list[int]:
    """ "1,2,3" (or 3, or (1, 2)) → [1, 2, 3]."""
    if isinstance(folds, int):
        return [folds]
    if isinstance(folds, tuple | list):
        return [int(f) for f in folds]
    try:
        return [int(f) for f in str(folds).split(",") if f.strip()]
    except ValueError:
        raise ConfigError(f"folds={folds!r} must be comma-separated integers, e.g. '1,2,3'")


def fold_seed(seed: int, fold: int) -> int:
    """The seed of `fold` of a run seeded `seed` (independent streams per fold)."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])


# Datasets with official train/test folds as TFDS configs: name → fold count.
FOLD_CONFIG_DATASETS = {"stica_hmdb51": 3, "stica_ucf101": 3}


def fold_dataset(dataset: str, fold: int) -> str:
    """The TFDS name of `fold` of `dataset`.

    "stica_hmdb51" → "stica_hmdb51/fold2" (folds 1-3 are TFDS configs, each with train/test
    splits); a name holding "{fold}" is formatted ("stica_ucf101/fold{fold}_short_side64"); any
    other dataset (AV-digits) has one fold, itself.
    """
    if "{fold}" in dataset:
        return dataset.format(fold=fold)
    num_folds = FOLD_CONFIG_DATASETS.get(dataset, 1)
    if not 1 <= fold <= num_folds:
        raise ConfigError(f"{dataset} has folds 1..{num_folds}; got fold {fold}")
    return f"{dataset}/fold{fold}" if dataset in FOLD_CONFIG_DATASETS else dataset
