"""`python -m stica_jax.report`: the table of hand-written results beside the paper."""

import json
import os
import pathlib
import subprocess
import sys

from tests.command_line import newcomer_dirs

REPO = pathlib.Path(__file__).resolve().parents[2]

FINETUNE = {
    "protocol": "finetune",
    "dataset": "hmdb51",
    "init": {"kind": "workdir", "source": "/ckpt/run1", "step": 120000},
    "metrics": ["top1", "top5"],
    "folds": {
        "1": {"top1": 60.0, "top5": 90.0, "best_epoch_top1": 64.0, "best_epoch": 9},
        "2": {"top1": 62.0, "top5": 92.0, "best_epoch_top1": 66.0, "best_epoch": 11},
    },
    "mean": {"top1": 61.0, "top5": 91.0},
    "std": {"top1": 1.0, "top5": 1.0},
    "config": {},
}
AUDIO = {
    "protocol": "audio",
    "dataset": "esc50",
    "init": {"kind": "torch", "source": "gdt_k400.pth", "step": None},
    "metrics": ["top1"],
    "folds": {str(k): {"top1": 70.0 + k} for k in range(1, 6)},
    "mean": {"top1": 73.0},
    "std": {"top1": 1.4142135623730951},
    "config": {},
}


def write(directory: pathlib.Path, results: dict) -> str:
    directory.mkdir(parents=True)
    (directory / "results.json").write_text(json.dumps(results))
    return str(directory)


def run_report(*args: str, cwd: pathlib.Path, home: pathlib.Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "stica_jax.report", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def rows(table: str) -> dict[str, list[str]]:
    """Markdown rows by their first two cells ("fine-tune HMDB-51"), cells stripped."""
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 2 and cells[0] != "---":
            out[f"{cells[0]} {cells[1]}"] = cells
    return out


def test_the_table_puts_runs_beside_the_paper_and_labels_test_set_selection(tmp_path):
    home, cwd = newcomer_dirs(tmp_path)
    dirs = [write(tmp_path / "esc", AUDIO), write(tmp_path / "ft", FINETUNE)]
    result = run_report(*dirs, cwd=cwd, home=home)
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    head = table["protocol dataset"]
    assert head[:7] == [
        "protocol",
        "dataset",
        "init",
        "folds",
        "top-1 (%)",
        "top-5 (%)",
        "paper top-1 (%)",
    ]
    assert "test epoch" in head[7]
    finetune = dict(zip(head, table["fine-tune HMDB-51"]))
    # The headline is the final epoch's 60/62; the best test epoch's 64/66 only in its column.
    assert finetune["top-1 (%)"] == "61.0 ± 1.0" and finetune["top-5 (%)"] == "91.0 ± 1.0"
    assert finetune["paper top-1 (%)"] == "67.0"
    assert finetune["folds"] == "2 (1,2)"
    assert finetune[head[7]] == "65.0 ± 1.0"
    assert "/ckpt/run1" in finetune["init"] and "120000" in finetune["init"]
    esc = dict(zip(head, table["audio linear ESC-50"]))
    assert esc["top-1 (%)"] == "73.0 ± 1.4" and esc["top-5 (%)"] == "–"
    assert esc["paper top-1 (%)"] == "81.1" and esc["folds"] == "5 (1,2,3,4,5)"
    assert esc[head[7]] == "–"
    assert list(table)[1:] == ["fine-tune HMDB-51", "audio linear ESC-50"]  # protocol order
    assert "test-set selection" in result.stdout  # the footnote of that column


def test_a_dir_without_results_is_one_line_and_exit_2(tmp_path):
    home, cwd = newcomer_dirs(tmp_path)
    good = write(tmp_path / "esc", AUDIO)
    result = run_report(good, str(tmp_path / "nothing"), cwd=cwd, home=home)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "results.json not found" in result.stderr and "Traceback" not in result.stderr
    result = run_report(cwd=cwd, home=home)  # no dir at all
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
