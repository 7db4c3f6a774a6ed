"""`python -m stica_jax.main` run as a newcomer runs it: a fresh home, an empty working directory,
no `$TFDS_DATA_DIR`, no `--config.data_dir`."""

import os
import re

import pytest

from tests.command_line import ROOT, newcomer_dirs, run_fresh, stderr_lines

TINY_DEMO = os.path.join(ROOT, "tests", "tiny_demo_config.py")
SOTA = os.path.join(ROOT, "configs", "sota.py")


@pytest.fixture
def fresh(tmp_path):
    """(home, cwd): two empty directories."""
    home, cwd = newcomer_dirs(tmp_path)
    return str(home), str(cwd)


def _directory_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(directory, name))
        for directory, _, names in os.walk(path)
        for name in names
    )


@pytest.mark.slow
def test_a_newcomer_run_writes_the_data_under_home_and_nothing_in_the_current_directory(
    fresh, tmp_path
):
    home, cwd = fresh
    result = run_fresh(
        [
            "-m",
            "stica_jax.main",
            f"--config={TINY_DEMO}",
            f"--workdir={tmp_path / 'work'}",
            # No train step to compile: the data paths and the console matter here (the
            # in-process demo test in test_train.py trains); the eval still reads both splits.
            "--config.num_epochs=0",
        ],
        home=home,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.listdir(cwd) == []

    data_dir = os.path.join(home, "tensorflow_datasets")
    (config_name,) = [
        name for name in os.listdir(os.path.join(data_dir, "av_digits")) if name != ".config"
    ]
    dataset_dir = os.path.join(data_dir, "av_digits", config_name, "1.1.0")
    assert os.path.exists(os.path.join(dataset_dir, "dataset_info.json"))

    # The console: what is generated, where and how big; the table; no library noise.
    lines = result.stdout.splitlines()
    announced = re.fullmatch(
        rf"generating AV-digits \(48 train / 24 test clips, ~([\d.]+) MB\) into "
        rf"{re.escape(dataset_dir)} …",
        lines[0],
    )
    assert announced, lines[0]
    assert float(announced.group(1)) * 1e6 == pytest.approx(_directory_bytes(dataset_dir), rel=0.08)
    assert lines[1].startswith("AV-digits ready: ")
    assert len(lines) == 6, lines
    assert lines[2] == f"linear_probe top-1 (%) on av_digits/{config_name} test"
    assert lines[3].split() == ["model", "video", "audio"]
    assert lines[4].startswith("trained ") and lines[5].startswith("random init ")
    for noise in ("Downloading and preparing", "Unknown size", "oneDNN", "libtpu", "Traceback"):
        assert noise not in result.stdout + result.stderr, noise


def test_an_unprepared_dataset_is_one_line_on_stderr_and_exit_status_2(fresh, tmp_path):
    home, cwd = fresh
    result = run_fresh(
        ["-m", "stica_jax.main", f"--config={SOTA}", f"--workdir={tmp_path / 'work'}"],
        home=home,
        cwd=cwd,
    )
    assert result.returncode == 2
    data_dir = os.path.join(home, "tensorflow_datasets")
    assert stderr_lines(result) == [
        f"stica_jax.main: error: dataset 'stica_kinetics400' is not prepared under {data_dir}; "
        "prepare it with: python -m stica_jax.prepare kinetics400 "
        f"--manual_dir=DIR_WITH_THE_DOWNLOADED_FILES --data_dir={data_dir}"
    ]
    assert os.listdir(cwd) == []


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config.nope=1"], "--config.nope: the config has no such field"),
        (["--config.model.nope=1"], "--config.model.nope: the config has no such field"),
        (
            ["--config.global_batch_size=many"],
            "flag --config.global_batch_size=many: invalid literal for int() with base 10: 'many'",
        ),
        (["--bogus"], "Unknown command line flag 'bogus'"),
        (["stray"], "unexpected arguments: ['stray']"),
    ],
)
def test_a_bad_flag_is_one_line_on_stderr_and_exit_status_2(fresh, tmp_path, args, message):
    home, cwd = fresh
    result = run_fresh(
        ["-m", "stica_jax.main", f"--config={SOTA}", f"--workdir={tmp_path / 'w'}", *args],
        home=home,
        cwd=cwd,
    )
    assert result.returncode == 2
    (line,) = stderr_lines(result)
    assert line.startswith(f"stica_jax.main: error: {message}"), line
    assert os.listdir(cwd) == []


def test_a_missing_config_file_or_workdir_is_one_line(fresh, tmp_path):
    home, cwd = fresh
    missing = run_fresh(
        ["-m", "stica_jax.main", "--config=configs/nope.py", f"--workdir={tmp_path / 'w'}"],
        home=home,
        cwd=cwd,
    )
    assert missing.returncode == 2
    assert stderr_lines(missing) == [
        "stica_jax.main: error: --config=configs/nope.py: no such config file"
    ]
    no_workdir = run_fresh(["-m", "stica_jax.main", f"--config={SOTA}"], home=home, cwd=cwd)
    assert no_workdir.returncode == 2
    (line,) = stderr_lines(no_workdir)
    assert "Flag --workdir must have a value other than None" in line
