"""Prepare a dataset: raw media in a manual dir → TFDS records in a data dir.

  python -m stica_jax.prepare NAME --manual_dir=DIR [--data_dir=DIR] [--num_workers=N]
      [--shard_index=I --num_shards=K] [--config=fold1] [--short_side=128] [--min_seconds=2]

NAME: kinetics400, ucf101, hmdb51, esc50, dcase2014, av_digits (generated, no manual dir).
The data dir defaults to $TFDS_DATA_DIR, else ~/tensorflow_datasets, where training reads.
What the two phases (decode into a cache, then write every config) do, how an interrupted or
sharded run resumes and what the skip reports hold: `data_pipeline.prepare`. A mistake in the
command (a flag, a manual dir without the dataset's files) is one line on stderr with exit
status 2 (`stica_jax.cli`).
"""

from absl import app, flags

from data_pipeline import prepare
from stica_jax import cli

_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Where the raw media were downloaded.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "The TFDS data dir to write into (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets).",
)
_CONFIG = flags.DEFINE_string("config", None, "Only this config (e.g. fold1); default: all.")
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers", None, "Decode processes (default: one per CPU core this process may use)."
)
_SHARD_INDEX = flags.DEFINE_integer("shard_index", 0, "This machine's share of the decoding.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 1, "Split the decoding over machines.")
_SHORT_SIDE = flags.DEFINE_integer("short_side", None, "Stored frame short side (default 128).")
_MIN_SECONDS = flags.DEFINE_float("min_seconds", None, "Skip media shorter than this.")


def main(argv: list[str]) -> None:
    names = ", ".join(prepare.DATASETS)
    if len(argv) != 2:
        given = f"; got {' '.join(argv[1:])}" if len(argv) > 2 else ""
        raise app.UsageError(f"give one dataset NAME, one of {names}{given}")
    name = argv[1]
    if name not in prepare.DATASETS:
        raise app.UsageError(f"unknown dataset {name!r}: NAME is one of {names}")
    if name != "av_digits" and not _MANUAL_DIR.value:
        raise app.UsageError(f"{name} needs --manual_dir")
    if not 0 <= _SHARD_INDEX.value < _NUM_SHARDS.value:
        raise app.UsageError("need 0 <= shard_index < num_shards")
    prepare.prepare(
        name,
        manual_dir=_MANUAL_DIR.value,
        data_dir=_DATA_DIR.value,
        config=_CONFIG.value,
        num_workers=_NUM_WORKERS.value,
        shard_index=_SHARD_INDEX.value,
        num_shards=_NUM_SHARDS.value,
        short_side=_SHORT_SIDE.value,
        min_seconds=_MIN_SECONDS.value,
    )


if __name__ == "__main__":
    cli.run(main)
