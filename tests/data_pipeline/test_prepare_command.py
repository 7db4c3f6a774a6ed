"""`python -m data_pipeline.prepare` as a newcomer runs it: a mistake in the command is one line
on stderr with exit status 2, and nothing lands in the current directory."""

import os

import pytest

from tests.command_line import run_fresh, stderr_lines

PREFIX = "python -m data_pipeline.prepare: error: "


@pytest.fixture
def fresh(tmp_path):
    """(home, cwd): two empty directories."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    return str(home), str(cwd)


@pytest.mark.parametrize(
    "args,message",
    [
        ([], "the following arguments are required: name"),
        (["ucf101"], "ucf101 needs --manual_dir"),
        (["mnist"], "argument name: invalid choice: 'mnist'"),
        (["av_digits", "--num_workers=x"], "argument --num_workers: invalid int value: 'x'"),
    ],
)
def test_a_bad_argument_is_one_line_with_status_2(fresh, args, message):
    home, cwd = fresh
    result = run_fresh(["-m", "data_pipeline.prepare", *args], home=home, cwd=cwd)
    assert result.returncode == 2
    (line,) = stderr_lines(result)
    assert line.startswith(PREFIX + message), line


def test_a_manual_dir_without_the_datasets_files_is_one_line_with_status_2(fresh, tmp_path):
    home, cwd = fresh
    (tmp_path / "empty").mkdir()
    args = ["-m", "data_pipeline.prepare", "ucf101"]
    missing = run_fresh([*args, f"--manual_dir={tmp_path / 'nope'}"], home=home, cwd=cwd)
    assert missing.returncode == 2
    assert stderr_lines(missing) == [f"{PREFIX}--manual_dir={tmp_path / 'nope'} is not a directory"]
    empty = run_fresh([*args, f"--manual_dir={tmp_path / 'empty'}"], home=home, cwd=cwd)
    assert empty.returncode == 2
    (line,) = stderr_lines(empty)
    assert line.startswith(
        f"{PREFIX}--manual_dir={tmp_path / 'empty'} lacks ucf101's 'classInd.txt': "
    )
    assert "UCF101TrainTestSplits-RecognitionTask.zip" in line  # the download instructions
    assert os.listdir(cwd) == []


def test_decode_workers_default_to_the_cores_this_process_may_use(monkeypatch):
    """`--num_workers` unset: one decode process per core of the process's affinity mask (a
    `taskset` or cpuset), as the training pipeline's decode, not one per core of the machine."""
    from data_pipeline import prepare

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 7}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert prepare._default_workers() == 3
