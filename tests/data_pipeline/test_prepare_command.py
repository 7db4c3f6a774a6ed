"""`python -m stica_jax.prepare` as a newcomer runs it: a mistake in the command is one line
on stderr with exit status 2, and nothing lands in the current directory."""

import os

import pytest

from tests.command_line import ROOT, run_fresh, stderr_lines
from tests.data_pipeline import media_files

PREFIX = "stica_jax.prepare: error: "


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
        ([], "give one dataset NAME, one of av_digits, kinetics400, ucf101, hmdb51, esc50, "),
        (["ucf101"], "ucf101 needs --manual_dir"),
        (["mnist"], "unknown dataset 'mnist': NAME is one of av_digits, kinetics400, "),
        (["av_digits", "--num_workers=x"], "flag --num_workers=x: invalid literal for int()"),
        (["av_digits", "--shard_index=2", "--num_shards=2"], "need 0 <= shard_index < num_shards"),
    ],
)
def test_a_bad_argument_is_one_line_with_status_2(fresh, args, message):
    home, cwd = fresh
    result = run_fresh(["-m", "stica_jax.prepare", *args], home=home, cwd=cwd)
    assert result.returncode == 2
    (line,) = stderr_lines(result)
    assert line.startswith(PREFIX + message), line


def test_av_digits_is_generated_without_a_manual_dir(fresh, tmp_path):
    """The command hands `prepare` no manual dir for av_digits (`prepare` stubbed: it prints
    what it got instead of generating the dataset)."""
    home, cwd = fresh
    code = (
        "import sys\n"
        "from data_pipeline import prepare\n"
        "prepare.prepare = lambda name, **kwargs: print(name, kwargs)\n"
        "from stica_jax import cli, prepare as command\n"
        "cli.run(command.main)\n"
    )
    result = run_fresh(
        ["-c", code, "av_digits", f"--data_dir={tmp_path / 'data'}"], home=home, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    name, kwargs = result.stdout.strip().split(" ", 1)
    assert name == "av_digits" and "'manual_dir': None" in kwargs
    assert f"'data_dir': '{tmp_path / 'data'}'" in kwargs
    assert os.listdir(cwd) == []


@pytest.mark.slow
def test_a_manual_dir_without_the_datasets_files_is_one_line_with_status_2(fresh, tmp_path):
    home, cwd = fresh
    (tmp_path / "empty").mkdir()
    args = ["-m", "stica_jax.prepare", "ucf101"]
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


@pytest.mark.slow
def test_a_download_without_any_usable_file_stops_and_a_partial_one_is_prepared(fresh, tmp_path):
    """Nothing downloaded yet: one line, status 2, every listed file in skipped_files.tsv. Train
    downloaded, validation not: exit 0 and validation left out, which training asked for names in
    one line with the command that prepares it."""
    home, cwd = fresh
    manual, data_dir = tmp_path / "manual", tmp_path / "data"
    (manual / "lists").mkdir(parents=True)
    (manual / "lists" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,clipintrain,0,10,train\n"
    )
    (manual / "lists" / "validate.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,clipinvalid,0,10,validate\n"
    )
    prepare = [
        "-m",
        "stica_jax.prepare",
        "kinetics400",
        f"--manual_dir={manual}",
        f"--data_dir={data_dir}",
        "--short_side=32",
        "--min_seconds=1",
        "--num_workers=1",
    ]
    nothing = run_fresh(prepare, home=home, cwd=cwd)
    assert nothing.returncode == 2, nothing.stderr[-2000:]
    line = stderr_lines(nothing)[-1]
    assert line.startswith(f"{PREFIX}no usable file in any split of kinetics400 "), line
    assert "missing_file=2" in line and "Traceback" not in nothing.stderr
    report = line.rsplit(" ", 1)[-1]
    with open(report) as file:
        assert [row.split("\t")[:3] for row in file.read().splitlines()[1:]] == [
            ["train", "clipintrain_000000_000010.mp4", "missing_file"],
            ["validation", "clipinvalid_000000_000010.mp4", "missing_file"],
        ]

    media_files.write_clip(str(manual / "clipintrain_000000_000010.webm"), seconds=1.2)
    partial = run_fresh(prepare, home=home, cwd=cwd)
    assert partial.returncode == 0, partial.stderr[-2000:]
    assert "Traceback" not in partial.stderr
    rows = [line.split() for line in partial.stdout.splitlines()]
    assert ["train", "1", "1", "0", "0", "0", "0", "0", "0"] in rows
    assert [
        "validation",
        "1",
        "0",
        "1",
        "0",
        "0",
        "0",
        "0",
        "0",
        "left",
        "out:",
        "no",
        "usable",
        "file",
    ] in rows

    train = run_fresh(
        [
            "-m",
            "stica_jax.main",
            f"--config={os.path.join(ROOT, 'configs', 'demo.py')}",
            f"--workdir={tmp_path / 'run'}",
            "--config.input.dataset=stica_kinetics400/default_short_side32_min_seconds1",
            f"--config.data_dir={data_dir}",
            "--config.train_split=validation",
            "--config.eval.method=none",
        ],
        home=home,
        cwd=cwd,
    )
    assert train.returncode == 2, train.stderr[-2000:]
    (line,) = stderr_lines(train)
    assert "has no split 'validation' (prepared: train)" in line
    assert "python -m stica_jax.prepare kinetics400 --manual_dir=" in line
    assert os.listdir(cwd) == []


def test_the_summary_counts_every_skip_reason_in_exactly_one_column():
    from data_pipeline import prepare
    from data_pipeline.media_decode import SKIP_REASONS

    columns = [reason for reasons in prepare.SUMMARY_COLUMNS.values() for reason in reasons]
    assert sorted(columns) == sorted(SKIP_REASONS)
