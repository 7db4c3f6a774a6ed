"""Prepare a stica_jax dataset: raw media in a manual dir → TFDS records in a data dir.

  python -m stica_jax.prepare NAME --manual_dir=DIR [--data_dir=DIR] [--num_workers=N]
      [--shard_index=I --num_shards=K] [--config=fold1] [--short_side=128] [--min_seconds=2]

runs `prepare` (`python -m data_pipeline.prepare`, the former spelling, still does). NAME:
kinetics400, ucf101, hmdb51, esc50, dcase2014, av_digits (generated, no manual dir). The data
dir defaults to $TFDS_DATA_DIR, else ~/tensorflow_datasets, where training reads
(`data_pipeline.data_dir.resolve_data_dir`).

Two phases. (1) Decode: every source file is decoded by a pool of worker processes (all CPU
cores by default) into the decode cache under the data dir, with a progress bar and ETA. Done
files are never decoded again, so an interrupted run resumes where it stopped; with
`--num_shards=K` machine I (sharing the data dir) decodes only every K-th file from the I-th and
stops after phase 1. (2) Write: a run without `--num_shards` decodes whatever is still missing,
then packs the cache into the TFDS dataset of every config (all folds share one decode), writes
`skipped_files.tsv` (split, file, reason, detail) into each dataset's directory and prints a
table per config: each split's listed files, how many were prepared, and why the others were
not (missing, no audio, silent, too short, undecodable, other).

Whatever subset of a download exists is prepared. A split none of whose files is usable (not
downloaded yet, say) is left out: TFDS cannot write an empty split, and a run asking for it gets
one line naming it and this command. Run `prepare` again once more files are there: a dataset
whose split sizes differ from what the manual dir now gives is rewritten (from the decode cache;
only new files are decoded). The command exits with status 2, after writing the reports, only
when no split of any config has a usable file.
"""

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import shutil

from tqdm import tqdm

from data_pipeline import atomic_file, decode_cache
from data_pipeline.data_dir import resolve_data_dir
from data_pipeline.errors import UserError, one_line

# The names of `data_pipeline.builders.BUILDERS`, listed here so that the command reports a wrong
# NAME before the builders load TensorFlow (tests/test_commands.py checks that the two agree).
DATASETS = ("av_digits", "kinetics400", "ucf101", "hmdb51", "esc50", "dcase2014")

# TensorFlow, TFDS and the builders (which load both) are imported inside the functions that use
# them: the spawned decode workers re-import this module (and `stica_jax.prepare`, the command's
# module, as their main) and must stay light (PyAV + numpy only).


@dataclasses.dataclass
class PreparationReport:
    """What a `prepare` call did."""

    decoded_now: int = 0  # files decoded by this call (0 when everything was cached)
    examples: dict[str, dict[str, int]] = dataclasses.field(
        default_factory=dict
    )  # config → split → count
    skipped: collections.Counter = dataclasses.field(
        default_factory=collections.Counter
    )  # reason → files
    report_files: list[str] = dataclasses.field(default_factory=list)


def _builders(
    name: str, data_dir: str, config: str | None, short_side: int | None, min_seconds: float | None
):
    from data_pipeline.builders import BUILDERS  # Late: TensorFlow (the note at the top).

    builder_class = BUILDERS[name]
    builders = []
    for builder_config in builder_class.BUILDER_CONFIGS:
        if config and builder_config.name != config:
            continue
        overrides = {}
        if short_side is not None and short_side != builder_config.decode.short_side:
            overrides["short_side"] = short_side
        if min_seconds is not None and min_seconds != builder_config.decode.min_seconds:
            overrides["min_seconds"] = min_seconds
        if overrides:
            suffix = "_".join(f"{key}{value:g}" for key, value in overrides.items())
            builder_config = dataclasses.replace(
                builder_config,
                name=f"{builder_config.name}_{suffix}",
                decode=dataclasses.replace(builder_config.decode, **overrides),
            )
        builders.append(builder_class(data_dir=data_dir, config=builder_config))
    if not builders:
        known = ", ".join(c.name for c in builder_class.BUILDER_CONFIGS)
        raise UserError(f"{name} has no config {config!r} (its configs: {known})")
    return builders


def _list_media(name: str, builders, manual_dir: str) -> list[dict]:
    """Each builder's split → items; a manual dir without the dataset's files is a `UserError`."""
    where = f"--manual_dir={manual_dir}"
    instructions = one_line(builders[0].MANUAL_DOWNLOAD_INSTRUCTIONS)
    if not os.path.isdir(manual_dir):
        raise UserError(f"{where} is not a directory")
    try:
        listed = [builder.list_media(manual_dir) for builder in builders]
    except (KeyError, StopIteration) as error:  # a list or folder the listing needs is missing
        raise UserError(f"{where} lacks {name}'s {error or 'media'}: {instructions}") from None
    if not any(items for splits in listed for items in splits.values()):
        raise UserError(f"{where} holds no {name} media: {instructions}")
    return listed


def _default_workers() -> int:
    """One decode process per CPU core this process may use (`records.cpu_cores`)."""
    from data_pipeline.records import cpu_cores  # Late: TensorFlow (the note at the top).

    return cpu_cores()


def _decode_all(jobs: list[tuple[str, decode_cache.CacheEntry]], settings, num_workers: int) -> int:
    """Decodes the not-yet-cached `jobs` (source path, cache entry); returns how many."""
    pending = [(path, entry) for path, entry in jobs if not entry.is_done()]
    print(
        f"{len(jobs)} files, {len(jobs) - len(pending)} already decoded, {len(pending)} to decode "
        f"with {num_workers} worker(s).",
        flush=True,
    )
    if not pending:
        return 0
    progress = tqdm(total=len(pending), unit="file", smoothing=0.05, dynamic_ncols=True)
    if num_workers <= 1:
        for path, entry in pending:
            decode_cache.decode_into_cache(path, entry, settings)
            progress.update()
    else:
        # spawn: the parent has TensorFlow's threads; forking them is unsafe.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
            futures = [
                pool.submit(decode_cache.decode_into_cache, path, entry, settings)
                for path, entry in pending
            ]
            for future in concurrent.futures.as_completed(futures):
                future.result()
                progress.update()
    progress.close()
    return len(pending)


# The per-split summary's columns: each skip reason counts under one of them.
SUMMARY_COLUMNS = {
    "missing": ("missing_file",),
    "no audio": ("no_audio_stream",),
    "silent": ("silent_audio",),
    "too short": ("too_short",),
    "undecodable": ("empty_file", "not_media", "truncated_or_corrupt"),
    "other": ("no_video_stream", "resolution_too_small", "resolution_too_large"),
}


def _summary_table(title: str, outcomes: dict[str, collections.Counter], kept_silent: bool) -> str:
    """The per-split table `prepare` prints: prepared files and skipped ones by reason."""
    from data_pipeline.media_builder import KEPT_SILENT  # Late: TensorFlow (the note at the top).

    headers = ["split", "listed", "prepared", *SUMMARY_COLUMNS]
    rows = []
    for split, counts in outcomes.items():
        row = [split, sum(v for k, v in counts.items() if k != KEPT_SILENT), counts["prepared"]]
        for column, reasons in SUMMARY_COLUMNS.items():
            row.append(
                sum(counts[r] for r in reasons) + (counts[KEPT_SILENT] if column == "silent" else 0)
            )
        if not counts["prepared"]:
            row.append("left out: no usable file")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [title]
    for row in [headers, *rows]:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ]
        lines.append("  " + "  ".join(cells + [str(c) for c in row[len(headers) :]]))
    if kept_silent:
        lines.append("  (silent: prepared without audio, the dataset's audio being optional)")
    return "\n".join(lines)


def _write_skip_report(builder, outcomes, report: PreparationReport) -> str:
    """`skipped_files.tsv` in the dataset's directory: a row per item not prepared as it was
    (skipped, or kept without its silent audio)."""
    from data_pipeline.media_builder import KEPT_SILENT  # Late: TensorFlow (the note at the top).

    rows = [
        (split, key, outcome, detail)
        for split, items in outcomes.items()
        for key, outcome, detail in items
        if outcome != "prepared"
    ]
    path = os.path.join(os.fspath(builder.data_dir), SKIP_REPORT)
    lines = ["split\tfile\treason\tdetail\n"] + [
        f"{split}\t{key}\t{reason}\t{detail.replace(chr(9), ' ').replace(chr(10), ' ')}\n"
        for split, key, reason, detail in rows
    ]
    atomic_file.write_text(path, "".join(lines))
    report.report_files.append(path)
    report.skipped.update(reason for _, _, reason, _ in rows if reason != KEPT_SILENT)
    return path


SKIP_REPORT = "skipped_files.tsv"


def _clear_unwritten(builder) -> None:
    """Removes a version directory that holds only a skip report of a run that wrote no dataset:
    TFDS would take its existence for a prepared dataset and never write it."""
    path = os.fspath(builder.data_dir)
    if os.path.isdir(path) and not builder.is_prepared() and set(os.listdir(path)) <= {SKIP_REPORT}:
        shutil.rmtree(path)


def _write_dataset(builder, manual_dir: str, usable: dict[str, int]) -> dict[str, int]:
    """Writes `builder`'s TFDS dataset; an existing one is rewritten when its split sizes are no
    longer what the manual dir gives (files added since, or a split now usable). Returns the
    written split sizes."""
    import tensorflow_datasets as tfds  # Late: TFDS (the note at the top).

    _clear_unwritten(builder)
    mode = None
    if builder.is_prepared():
        written = {split: info.num_examples for split, info in builder.info.splits.items()}
        if written == usable:
            return written
        print(
            f"{builder.name}/{builder.builder_config.name}: rewriting the dataset prepared with "
            f"{written} for {usable}",
            flush=True,
        )
        mode = tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS  # overwrites the dataset
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir,
            **({"download_mode": mode} if mode else {}),
        )
    )
    return {split: info.num_examples for split, info in builder.info.splits.items()}


def prepare(
    name: str,
    *,
    manual_dir: str | None,
    data_dir: str | None = None,
    config: str | None = None,
    num_workers: int | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    short_side: int | None = None,
    min_seconds: float | None = None,
) -> PreparationReport:
    """Prepares dataset `name` (every config, or `config`) into `resolve_data_dir(data_dir)`;
    see the module docstring.

    Raises:
      UserError: `config` or `manual_dir` do not fit the dataset, or no split of any config has
        a usable file (the skip reports are written first).
    """
    data_dir = resolve_data_dir(data_dir)
    report = PreparationReport()
    if name == "av_digits":
        from data_pipeline import av_digits  # Late: TensorFlow (the note at the top).

        builder = av_digits.ensure_prepared(data_dir)
        report.examples["default"] = {
            split: info.num_examples for split, info in builder.info.splits.items()
        }
        return report

    # Late: TensorFlow (the note at the top).
    from data_pipeline.media_builder import KEPT_SILENT, item_outcomes, outcome_counts

    builders = _builders(name, data_dir, config, short_side, min_seconds)
    all_splits = _list_media(name, builders, manual_dir)
    # Folds list the same files: decode each once, shared through the cache.
    jobs = {}
    for builder, splits in zip(builders, all_splits):
        for items in splits.values():
            for item in items:
                jobs.setdefault(item.key, (item.path, builder.cache_entry(item)))
    ordered = [jobs[key] for key in sorted(jobs)]
    report.decoded_now = _decode_all(
        ordered[shard_index::num_shards],
        builders[0].decode_settings,
        num_workers or _default_workers(),
    )
    if num_shards > 1:
        print(
            f"Shard {shard_index}/{num_shards} decoded. Once every shard is done, run again without "
            "--num_shards to write the dataset.",
            flush=True,
        )
        return report

    for builder, splits in zip(builders, all_splits):
        outcomes = item_outcomes(builder, splits)
        counts = outcome_counts(outcomes)
        usable = {split: c["prepared"] for split, c in counts.items() if c["prepared"]}
        config_name = builder.builder_config.name
        if usable:
            report.examples[config_name] = _write_dataset(builder, manual_dir, usable)
        report_path = _write_skip_report(builder, outcomes, report)
        kept_silent = any(c[KEPT_SILENT] for c in counts.values())
        print(_summary_table(f"{builder.name}/{config_name}:", counts, kept_silent))
        print(f"  every file not prepared is listed in {report_path}", flush=True)
    if not report.examples:
        raise UserError(
            f"no usable file in any split of {name} under --manual_dir={manual_dir} ("
            + ", ".join(f"{reason}={count}" for reason, count in sorted(report.skipped.items()))
            + f"); each file's reason is in {report.report_files[0]}"
        )
    return report


if __name__ == "__main__":  # the former spelling of `python -m stica_jax.prepare`
    from stica_jax import cli, prepare as command

    cli.run(command.main)
