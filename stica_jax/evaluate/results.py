"""The results of an evaluation protocol: per-fold files while it runs, `results.json` at the end.

Every protocol (fine-tuning, linear probing, audio classification) writes the same schema, so
that `python -m stica_jax.report` can put any of them beside the paper's numbers:

    {
      "protocol": "finetune" | "linear" | "audio",
      "dataset": "hmdb51" | "ucf101" | "esc50" | "dcase2014" | "av_digits",
      "init": {"kind": "workdir" | "torch" | "random", "source": "<path or ''>", "step": int|null},
      "metrics": ["top1", "top5"],          # the per-fold metrics (audio: ["top1"])
      "folds": {"1": {"top1": 67.3, "top5": 91.0, "best_epoch_top1": 68.1, "best_epoch": 10}},
      "mean": {"top1": ..., "top5": ...},   # over the folds present
      "std": {"top1": ..., "top5": ...},    # population std over the folds (0 for one fold)
      "config": {...}                       # the evaluation config
    }

`best_epoch_top1` / `best_epoch` appear only for fine-tuning: the official `eval_video.py`
reports the best test-set epoch (test-set selection, spec §10), kept for comparison only.

While a protocol runs, each finished fold is written to `<workdir>/fold<k>/result.json`
(`write_fold`), and a restarted run skips the folds found there (`read_fold`).
"""

import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from data_pipeline import atomic_file
from data_pipeline.errors import UserError

RESULTS_FILE = "results.json"
FOLD_FILE = "result.json"
PROTOCOLS = ("finetune", "linear", "audio")
INIT_KINDS = ("workdir", "torch", "random")
# Figures of the official code's test-set selection (fine-tuning): never a headline number.
TEST_SET_SELECTION_KEYS = ("best_epoch_top1", "best_epoch_top5", "best_epoch")


class ResultsError(UserError, ValueError):
    """A missing or malformed results file; the message is one line naming the file."""


def dataset_name(tfds_name: str) -> str:
    """The schema's dataset name of a TFDS name: "stica_hmdb51/fold1" → "hmdb51"."""
    base = tfds_name.split("/")[0]
    return base.removeprefix("stica_")


def fold_statistics(
    folds: Mapping[str, Mapping[str, float]], metrics: Iterable[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """(mean, population std) of each metric over the folds that have it.

    A metric no fold has is left out of both; one fold gives std 0.
    """
    mean, std = {}, {}
    for metric in metrics:
        values = [float(fold[metric]) for fold in folds.values() if metric in fold]
        if not values:
            continue
        m = sum(values) / len(values)
        mean[metric] = m
        std[metric] = math.sqrt(sum((v - m) ** 2 for v in values) / len(values))
    return mean, std


def make_results(
    *,
    protocol: str,
    dataset: str,
    init: Mapping[str, Any],
    metrics: list[str],
    folds: Mapping[int | str, Mapping[str, float]],
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """The `results.json` dict of a protocol run (fold keys become strings, in fold order)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if init.get("kind") not in INIT_KINDS:
        raise ValueError(f"unknown init kind {init.get('kind')!r}; expected one of {INIT_KINDS}")
    by_fold = {str(k): dict(folds[k]) for k in sorted(folds, key=int)}
    for key, fold in by_fold.items():
        missing = [m for m in metrics if m not in fold]
        if missing:
            raise ValueError(f"fold {key} lacks metrics {missing}")
    mean, std = fold_statistics(by_fold, metrics)
    return {
        "protocol": protocol,
        "dataset": dataset,
        "init": {
            "kind": init["kind"],
            "source": str(init.get("source") or ""),
            "step": None if init.get("step") is None else int(init["step"]),
        },
        "metrics": list(metrics),
        "folds": by_fold,
        "mean": mean,
        "std": std,
        "config": dict(config),
    }


def _write_json(path: str, value: Any) -> None:
    """Written whole or not at all (`atomic_file`), so a killed run never leaves half a file."""
    atomic_file.write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def write_results(workdir: str, results: Mapping[str, Any]) -> str:
    """`<workdir>/results.json`; returns its path."""
    path = os.path.join(workdir, RESULTS_FILE)
    _write_json(path, results)
    return path


def finish(
    workdir: str,
    config: Any,
    *,
    protocol: str,
    init: Mapping[str, Any],
    metrics: list[str],
    folds: Mapping[int | str, Mapping[str, float]],
    is_chief: bool,
) -> dict[str, Any]:
    """The end of every protocol run: its results (`make_results` of the ml_collections `config`),
    written to `<workdir>/results.json` and summed up in one printed line by the chief."""
    results = make_results(
        protocol=protocol,
        dataset=dataset_name(config.dataset),
        init=init,
        metrics=metrics,
        folds=folds,
        config=json.loads(config.to_json_best_effort()),
    )
    if is_chief:
        write_results(workdir, results)
        print(summary_line(results), flush=True)
    return results


def read_results(eval_dir: str) -> dict[str, Any]:
    """The `results.json` of `eval_dir`, checked against the schema (`ResultsError` if not)."""
    path = os.path.join(eval_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        raise ResultsError(f"{path} not found: is {eval_dir} an evaluation workdir?")
    try:
        with open(path) as file:
            results = json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise ResultsError(f"{path} is not readable JSON: {error}") from None
    problem = _schema_problem(results)
    if problem:
        raise ResultsError(f"{path}: {problem}")
    return results


def _schema_problem(results: Any) -> str | None:
    if not isinstance(results, dict):
        return "not a JSON object"
    for key in ("protocol", "dataset", "init", "metrics", "folds", "mean", "std"):
        if key not in results:
            return f"missing {key!r}"
    if results["protocol"] not in PROTOCOLS:
        return f"unknown protocol {results['protocol']!r}"
    metrics, folds = results["metrics"], results["folds"]
    if not isinstance(metrics, list) or not isinstance(folds, dict):
        return "'metrics' must be a list and 'folds' an object"
    for key, fold in folds.items():
        if not isinstance(fold, dict) or any(
            not isinstance(fold.get(m), int | float) for m in metrics
        ):
            return f"fold {key} lacks a number for each of {metrics}"
    return None


def fold_dir(workdir: str, fold: int) -> str:
    return os.path.join(workdir, f"fold{fold}")


def write_fold(
    workdir: str, fold: int, metrics: Mapping[str, float], details: Mapping[str, Any] | None = None
) -> str:
    """`<workdir>/fold<k>/result.json`: the fold's metrics (what goes into `results.json`) and
    optional details (sizes, training loss) kept only there."""
    path = os.path.join(fold_dir(workdir, fold), FOLD_FILE)
    _write_json(path, {"metrics": dict(metrics), "details": dict(details or {})})
    return path


def read_fold(workdir: str, fold: int) -> dict[str, float] | None:
    """The metrics a finished fold wrote, or None when the fold has not finished."""
    path = os.path.join(fold_dir(workdir, fold), FOLD_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as file:
        return json.load(file)["metrics"]


def summary_line(results: Mapping[str, Any]) -> str:
    """One line: protocol, dataset, each metric's mean ± std and the fold count."""
    parts = [
        f"{m} {results['mean'][m]:.1f} ± {results['std'][m]:.1f}"
        for m in results["metrics"]
        if m in results["mean"]
    ]
    n = len(results["folds"])
    return (
        f"{results['protocol']} {results['dataset']}: {', '.join(parts)} "
        f"over {n} fold{'s' if n != 1 else ''}"
    )
