"""The results of evaluation runs as one markdown table, beside the paper's numbers (spec §11);
`python -m stica_jax.report EVAL_DIR...` prints it.

Each run is the `results.json` of a protocol run's `--workdir` (`stica_jax.evaluate.results`).
A row shows mean ± population std of top-1 (and top-5) over the
folds that ran, and how many there were. Fine-tuning runs also carry the official code's
best-test-epoch figure: it goes in its own column, labelled as test-set selection, never in the
headline top-1.
"""

from collections.abc import Mapping, Sequence
from typing import Any

# Top-1 (%) of the paper, K-400 pretraining, R(2+1)D-18 (spec §11; seed Tables 6 and 7).
PAPER_TOP1 = {
    ("finetune", "hmdb51"): 67.0,
    ("finetune", "ucf101"): 93.1,
    ("linear", "hmdb51"): 48.2,
    ("linear", "ucf101"): 77.0,
    ("audio", "esc50"): 81.1,
    ("audio", "dcase2014"): 94.0,
}
PROTOCOL_NAMES = {"finetune": "fine-tune", "linear": "linear probe", "audio": "audio linear"}
DATASET_NAMES = {
    "hmdb51": "HMDB-51",
    "ucf101": "UCF-101",
    "esc50": "ESC-50",
    "dcase2014": "DCASE2014",
    "av_digits": "AV-digits",
}
_ORDER = list(PROTOCOL_NAMES)
SELECTION_NOTE = (
    "best test epoch: the epoch with the highest test top-1, as the official `eval_video.py` "
    "reports it. This is test-set selection, shown only to compare with numbers produced that "
    "way; the headline is the final epoch."
)

PAPER_VIDEO_NOTE = (
    "The paper's fine-tuning and linear-probe numbers come from the official script, which "
    "reports the best test epoch (spec §10)."
)


def _mean_std(results: Mapping[str, Any], metric: str) -> str:
    if metric not in results["mean"]:
        return "–"
    return f"{results['mean'][metric]:.1f} ± {results['std'][metric]:.1f}"


def _selection(results: Mapping[str, Any]) -> str:
    """Mean ± std of the folds' best-epoch top-1 (only folds that report one)."""
    values = [f["best_epoch_top1"] for f in results["folds"].values() if "best_epoch_top1" in f]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return f"{mean:.1f} ± {std:.1f}"


def _init(results: Mapping[str, Any]) -> str:
    init = results["init"]
    text = init["kind"] if not init.get("source") else f"{init['kind']} `{init['source']}`"
    return text if init.get("step") is None else f"{text} step {init['step']}"


def format_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table of `runs` (results.json dicts), sorted by protocol and dataset."""
    runs = sorted(
        runs,
        key=lambda r: (
            _ORDER.index(r["protocol"]),
            r["dataset"],
            r["init"]["kind"],
            str(r["init"].get("source")),
        ),
    )
    with_selection = any(_selection(r) != "–" for r in runs)
    head = ["protocol", "dataset", "init", "folds", "top-1 (%)", "top-5 (%)", "paper top-1 (%)"]
    if with_selection:
        head.append("best test epoch top-1 (%)¹")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in runs:
        paper = PAPER_TOP1.get((r["protocol"], r["dataset"]))
        folds = ",".join(r["folds"])
        row = [
            PROTOCOL_NAMES[r["protocol"]],
            DATASET_NAMES.get(r["dataset"], r["dataset"]),
            _init(r),
            f"{len(r['folds'])} ({folds})",
            _mean_std(r, "top1"),
            _mean_std(r, "top5"),
            "–" if paper is None else f"{paper:.1f}",
        ]
        if with_selection:
            row.append(_selection(r))
        lines.append("| " + " | ".join(row) + " |")
    notes = ["", "top-1 / top-5: mean ± population std over the folds that ran."]
    if with_selection:
        notes.append(f"¹ {SELECTION_NOTE}")
    if any(r["protocol"] in ("finetune", "linear") for r in runs):
        notes.append(PAPER_VIDEO_NOTE)
    return "\n".join(lines + notes)


if __name__ == "__main__":  # the former spelling of `python -m stica_jax.report`
    from stica_jax import cli, report

    cli.run(report.main)
