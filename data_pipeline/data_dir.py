"""The TFDS data dir: one rule for every path that reads or writes a dataset.

Training and its probes, `python -m stica_jax.prepare`, AV-digits generation and the
benchmarks all call `resolve_data_dir`, so a dataset is written where it is later read, and never
relative to the current directory. (A module of its own, with no TensorFlow: the AV-digits
builder and `prepare`'s decode workers import it.)
"""

import os

# TFDS's own rule (`tfds.core.constants.get_default_data_dir`), read at call time rather than at
# TFDS's import, and made absolute.
DATA_DIR_ENV = "TFDS_DATA_DIR"
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")


def resolve_data_dir(data_dir: str | None = None) -> str:
    """The TFDS data dir to read and write: `data_dir`; else $TFDS_DATA_DIR; else
    `~/tensorflow_datasets` (TFDS's default).

    An empty string counts as unset. A local path comes back absolute, with `~` expanded; a
    URL (`gs://bucket/tfds`) comes back unchanged.
    """
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    if "://" in chosen:
        return chosen
    return os.path.abspath(os.path.expanduser(chosen))
