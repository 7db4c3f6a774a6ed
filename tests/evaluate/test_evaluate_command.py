"""`python -m stica_jax.evaluate` as a newcomer runs it: an empty working directory and home."""

import json
import os
import pathlib
import stat

import pytest

from tests.command_line import ROOT, newcomer_dirs, run_fresh, stderr_lines
from tests.evaluate.conftest import tiny_digits_name
from tests.evaluate.test_heatmap import tiny_workdir


@pytest.mark.slow
def test_no_model_is_one_line_with_exit_2(tmp_path):
    """The command's line for a config without a model; a missing workdir or file, two
    models: the same error, tested in-process (tests/evaluate/test_init.py)."""
    home, cwd = newcomer_dirs(tmp_path)
    config = os.path.join(ROOT, "configs/eval/finetune_hmdb51.py")
    result = run_fresh(
        ["-m", "stica_jax.evaluate", f"--config={config}", f"--workdir={tmp_path / 'eval'}"],
        home=str(home),
        cwd=str(cwd),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert stderr_lines(result) == [
        "stica_jax.evaluate: error: give exactly one model to evaluate: "
        "--config.init.workdir=PRETRAIN_DIR, --config.init.torch=FILE or "
        "--config.init.random=True (none was given)"
    ]
    assert not list(cwd.iterdir())  # nothing written where it ran


@pytest.mark.slow
def test_weights_of_another_architecture_are_one_line_with_exit_2(tmp_path):
    """The command's line for a weights file it cannot load. Its other refusals of a file
    (missing, neither tower's keys, no model or two) are the same errors, tested in-process:
    tests/evaluate/test_init.py."""
    torch = pytest.importorskip("torch")
    home, cwd = newcomer_dirs(tmp_path)
    # The tiny test network under a file of torchvision r2plus1d_18 keys (only its stem: the
    # architecture check comes before any weight is read).
    r2plus1d = str(tmp_path / "r2plus1d_18.pth")
    torch.save({"stem.0.weight": torch.zeros(45, 3, 1, 7, 7)}, r2plus1d)
    config = os.path.join(ROOT, "tests/tiny_eval_config.py")
    result = run_fresh(
        [
            "-m",
            "stica_jax.evaluate",
            f"--config={config}",
            f"--config.init.torch={r2plus1d}",
            f"--workdir={tmp_path / 'eval'}",
        ],
        home=str(home),
        cwd=str(cwd),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(stderr_lines(result)) == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("stica_jax.evaluate: error: init.torch ")
    assert "cannot load into config.model: the video backbone (widths (8, 8, 16, 16)" in (
        result.stderr
    )
    assert not list(cwd.iterdir())


@pytest.mark.slow
def test_a_linear_probe_runs_from_a_workdir_and_a_missing_dataset_is_one_line(digits_dir, tmp_path):
    home, cwd = newcomer_dirs(tmp_path)
    workdir = tiny_workdir(pathlib.Path(tmp_path) / "pre")
    config = os.path.join(ROOT, "tests/tiny_eval_config.py")
    common = ["-m", "stica_jax.evaluate", f"--config={config}", f"--config.init.workdir={workdir}"]
    result = run_fresh(
        common
        + [
            "--config.protocol=linear",
            f"--config.data_dir={digits_dir}",
            f"--config.dataset={tiny_digits_name()}",
            f"--workdir={tmp_path / 'eval'}",
        ],
        home=str(home),
        cwd=str(cwd),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    path = tmp_path / "eval" / "results.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # for colleagues (umask 022: conftest)
    results = json.load(open(tmp_path / "eval" / "results.json"))
    assert results["protocol"] == "linear" and list(results["folds"]) == ["1"]
    assert results["init"] == {"kind": "workdir", "source": workdir, "step": 3}
    assert result.stdout.strip().splitlines()[-1].startswith("linear av_digits: top1 ")
    assert "ETA" in result.stdout  # the progress line
    assert not list(cwd.iterdir())
    # The same command against a dataset nobody prepared (the default data dir of an empty home).
    result = run_fresh(
        common + ["--config.dataset=stica_hmdb51", f"--workdir={tmp_path / 'eval2'}"],
        home=str(home),
        cwd=str(cwd),
    )
    assert result.returncode == 2 and len(stderr_lines(result)) == 1, result.stderr[-2000:]
    assert "'stica_hmdb51/fold1' is not prepared" in result.stderr
    assert "python -m stica_jax.prepare hmdb51" in result.stderr
