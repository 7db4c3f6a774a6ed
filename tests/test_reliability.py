"""`python -m stica_jax.main` under faults and bad input: damaged checkpoints, a non-finite step,
a second run on one workdir, a changed config, bad values, a failing save, a resumed
`metrics.jsonl`.

Each test runs the tiny demo config (tests/tiny_demo_config.py, 12 steps) as a subprocess, in
an empty working directory with an empty home (tests/tiny_runs.py). One trained workdir
(checkpoints 4, 8, 12; the `trained` fixture of tests/conftest.py) is made once per session and
copied per test. The runs share the session's compilation cache, so only the first run of each
train step pays for compiling it.
"""

import glob
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests import tiny_runs
from tests.command_line import run_fresh, stderr_lines


@pytest.fixture
def workdir(trained, tmp_path):
    """A copy of the trained workdir, for this test to damage."""
    copy = tmp_path / "work"
    shutil.copytree(trained[1], copy)
    return copy


def _history(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _error_line(result):
    """The one line of a user error: exit status 2, no traceback, one `error:` line.

    Other lines may stand beside it that no test controls (XLA's alarm for a slow compile on a
    busy machine, TensorFlow's notes as its iterators shut down).
    """
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in stderr_lines(result) if "error: " in line]
    assert line.startswith("stica_jax.main: error: "), line
    return line[len("stica_jax.main: error: ") :]


# -- Damaged checkpoints --------------------------------------------------------------------------


def _data_files(step_dir):
    """Every file of array data (OCDBT's `d/` directories). All of them, not one: a restore reads
    only the byte ranges the newest b-tree references, and which files those are varies
    (truncating the largest one left the restored values bit-identical in one of two runs)."""
    return [
        os.path.join(d, n)
        for d, _, names in os.walk(step_dir)
        if os.path.basename(d) == "d"
        for n in names
    ]


def _truncate(step_dir):
    for path in _data_files(step_dir):
        os.truncate(path, os.path.getsize(path) // 2)


def _random_bytes(step_dir):
    rng = np.random.default_rng(0)
    for path in _data_files(step_dir):
        with open(path, "wb") as f:
            f.write(rng.bytes(os.path.getsize(path)))


def _delete_data_files(step_dir):
    for path in _data_files(step_dir):
        os.remove(path)


def _empty(step_dir):
    shutil.rmtree(step_dir)
    os.mkdir(step_dir)


def _delete_metadata(step_dir):
    os.remove(os.path.join(step_dir, "default", "_METADATA"))


DAMAGES = [_truncate, _random_bytes, _delete_data_files, _empty, _delete_metadata]


@pytest.mark.slow  # the session's trained run (fixture `trained`)
def test_damaged_checkpoints_are_set_aside_and_the_newest_intact_one_is_used(
    trained, workdir, tmp_path
):
    # Steps 12, 16, ..., 28 (copies of 12), newest first damaged in each of the five ways.
    checkpoints = workdir / "checkpoints"
    damaged = [28, 24, 20, 16, 12]
    for step, damage in zip(damaged, DAMAGES):
        if step != 12:
            shutil.copytree(checkpoints / "12", checkpoints / str(step))
        damage(str(checkpoints / str(step)))
    # 8 steps in all: the resumed run restores and has nothing left to train (no compile).
    result = tiny_runs.run_main(tmp_path, workdir, trained[0], "--config.num_epochs=2.67")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "resuming from the checkpoint of step 8" in result.stdout
    reports = [line for line in stderr_lines(result) if "cannot be restored" in line]
    assert len(reports) == len(damaged), result.stderr[-3000:]
    for step, line in zip(damaged, reports):
        moved = checkpoints / f"{step}.corrupt"
        report = re.search(
            rf"the checkpoint of step {step} cannot be restored \((.+)\); moved it to "
            rf"{re.escape(str(moved))} and resumed from step 8$",
            line,
        )
        assert report, line
        reason = report.group(1)  # the first real error, not a wrapper's or an event loop's
        assert re.match(r"\w+: \S", reason) or reason == "its directory is empty", reason
        assert "Event loop is closed" not in reason
        assert moved.is_dir()
    assert sorted(os.listdir(checkpoints)) == sorted(
        ["4", "8", *(f"{step}.corrupt" for step in damaged)]
    )
    assert len(stderr_lines(result)) < 2 * len(damaged), result.stderr[-3000:]


@pytest.mark.slow  # the session's trained run (fixture `trained`)
def test_no_readable_checkpoint_is_one_line_and_nothing_is_moved_or_started_over(
    trained, workdir, tmp_path
):
    checkpoints = workdir / "checkpoints"
    for step in (4, 8, 12):
        _delete_metadata(str(checkpoints / str(step)))
    config = (workdir / "config.json").read_bytes()
    result = tiny_runs.run_main(tmp_path, workdir, trained[0])
    message = _error_line(result)
    assert message.startswith(f"no checkpoint in {checkpoints} can be restored (steps 12, 8, 4)")
    assert sorted(os.listdir(checkpoints), key=int) == ["4", "8", "12"]
    assert (workdir / "config.json").read_bytes() == config


@pytest.mark.slow  # the session's trained run (fixture `trained`)
def test_export_of_a_workdir_falls_back_to_the_newest_intact_checkpoint(workdir, tmp_path):
    _truncate(str(workdir / "checkpoints" / "12"))
    out = tmp_path / "export"
    result = run_fresh(
        ["-m", "stica_jax.export", f"--workdir={workdir}", f"--out={out}"],
        home=str(tmp_path),
        cwd=str(tmp_path),
        env={"JAX_PLATFORMS": "cpu"},
    )
    # Step 8 is restored; the tiny model then has no torchvision counterpart to export to.
    (report,) = [line for line in stderr_lines(result) if "cannot be restored" in line]
    assert re.search(
        r"the checkpoint of step 12 cannot be restored \(\w+: .+\); moved it to "
        rf"{re.escape(str(workdir / 'checkpoints' / '12.corrupt'))} and resumed from step 8$",
        report,
    ), report
    assert stderr_lines(result)[-1].endswith("Slim variants cannot be exported to PyTorch."), (
        result.stderr[-3000:]
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["12.corrupt", "4", "8"]


# -- Nothing non-finite is saved ------------------------------------------------------------------


@pytest.mark.slow
def test_a_step_that_makes_the_state_non_finite_stops_the_run_before_any_save(
    trained, workdir, tmp_path
):
    shutil.rmtree(workdir / "checkpoints" / "12")
    # The command: an update of lr 1e39 overflows the parameters although the loss and
    # gradient it was computed from are finite. Step 9 is the last one: its save is the final.
    result = tiny_runs.run_main(
        tmp_path,
        workdir,
        trained[0],
        "--config.optimizer.base_lr=1e39",
        "--config.optimizer.warmup_start_lr=1e39",
        "--config.num_epochs=3",
    )
    message = _error_line(result)
    assert re.fullmatch(
        r"step 9: the update made the parameters, BatchNorm statistics or optimizer state "
        r"non-finite \(loss=\S+, grad_norm=\S+\); stopping without saving it\. "
        r"The last checkpoint, step 8, is finite\.",
        message,
    ), message
    loss, grad_norm = re.search(r"loss=(\S+), grad_norm=(\S+)\)", message).groups()
    assert np.isfinite(float(loss)) and np.isfinite(float(grad_norm))
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == ["4", "8"]


# -- One run per workdir --------------------------------------------------------------------------


def _process_start(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def _write_lock(workdir, pid, started="2026-01-02 03:04:05"):
    lock = {
        "host": socket.gethostname(),
        "pid": pid,
        "started": started,
        "process_start": _process_start(pid) if os.path.exists(f"/proc/{pid}") else 1,
    }
    (workdir / "run.lock").write_text(json.dumps(lock))


@pytest.mark.slow  # the session's trained run (fixture `trained`)
def test_a_second_run_on_a_workdir_refuses_naming_the_first(trained, workdir, tmp_path):
    _write_lock(workdir, os.getpid())  # held by this (live) test process
    before = sorted(os.listdir(workdir))
    metrics = (workdir / "metrics.jsonl").read_bytes()
    result = tiny_runs.run_main(tmp_path, workdir, trained[0])
    assert _error_line(result) == (
        f"{workdir} is in use by another run (pid {os.getpid()} on host {socket.gethostname()}, "
        "started 2026-01-02 03:04:05); wait for it to finish, or use another --workdir"
    )
    assert sorted(os.listdir(workdir)) == before
    assert (workdir / "metrics.jsonl").read_bytes() == metrics


@pytest.mark.slow  # the session's trained run (fixture `trained`)
def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(trained, workdir, tmp_path):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(gone.stdout)
    _write_lock(workdir, pid)
    result = tiny_runs.run_main(tmp_path, workdir, trained[0])  # 12 steps: all done already
    assert result.returncode == 0, result.stderr[-3000:]
    (warning,) = [line for line in stderr_lines(result) if "lock" in line]
    assert warning.endswith(
        f"taking over the lock of {workdir}: that run (pid {pid} on host "
        f"{socket.gethostname()}, started 2026-01-02 03:04:05) is gone"
    ), warning
    assert not (workdir / "run.lock").exists()  # released at the end


# -- The saved config is the contract -------------------------------------------------------------


@pytest.mark.slow  # the session's trained run (fixture `trained`)
def test_a_restart_with_another_architecture_is_refused_before_anything_is_written(
    trained, workdir, tmp_path
):
    files = {name: (workdir / name).read_bytes() for name in ("config.json", "metrics.jsonl")}
    result = tiny_runs.run_main(tmp_path, workdir, trained[0], "--config.model.embed_dim=32")
    assert _error_line(result) == (
        f"{workdir} holds a run of another config: model.embed_dim: 16 → 32. Restart with its "
        f"config ({workdir / 'config.json'}), use another --workdir, or pass "
        "--config_change=allow to go on with the new values"
    )
    for name, content in files.items():
        assert (workdir / name).read_bytes() == content, name
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == ["4", "8", "12"]


@pytest.mark.slow  # the session's trained run (fixture `trained`)
def test_config_change_allow_goes_on_with_the_new_values_and_says_which(trained, workdir, tmp_path):
    """A contract field changed on purpose (here the augmentation's flip probability: the same
    parameters and train step, so the run restores): a warning names the change, and the
    workdir's config.json then holds the new value, the contract of the runs after it."""
    result = tiny_runs.run_main(
        tmp_path, workdir, trained[0], "--config.input.flip_prob=0.5", "--config_change=allow"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (warning,) = [line for line in stderr_lines(result) if "changed config" in line]
    assert warning.endswith(
        f"{workdir}: going on with a changed config: input.flip_prob: 0.0 → 0.5"
    )
    assert json.loads((workdir / "config.json").read_text())["input"]["flip_prob"] == 0.5
    assert "resuming from the checkpoint of step 12" in result.stdout + result.stderr


# -- Bad values are refused before compiling ------------------------------------------------------


@pytest.mark.parametrize(
    "flag,message",
    [
        # The other values validate_config refuses: tests/test_train.py, in-process.
        ("--config.keep_checkpoints=0", "keep_checkpoints=0 must be at least 1"),
        ("--config.global_batch_size=-16", "global_batch_size=-16 must be positive"),
    ],
)
def test_a_bad_value_is_one_line_before_anything_starts(flag, message, tmp_path):
    workdir, data_dir = tmp_path / "work", tmp_path / "data"
    result = tiny_runs.run_main(tmp_path, workdir, data_dir, flag)
    assert _error_line(result) == message
    assert not workdir.exists() and not data_dir.exists()


@pytest.mark.slow  # the session's trained run (fixture `trained`)
def test_epochs_that_round_down_to_no_step_are_refused(trained, tmp_path):
    workdir = tmp_path / "work"
    result = tiny_runs.run_main(tmp_path, workdir, trained[0], "--config.num_epochs=0.3")
    assert _error_line(result) == (
        "num_epochs=0.3 of 3 steps each is no step at all; train at least 0.333 epochs"
    )
    assert not (workdir / "checkpoints").exists()


# -- Corrupt data ---------------------------------------------------------------------------------


def _train_shards(data_dir):
    shards = sorted(glob.glob(os.path.join(data_dir, "av_digits", "*", "*", "*-train.tfrecord*")))
    assert shards, data_dir
    return shards


@pytest.fixture
def data_copy(trained, tmp_path):
    """A copy of the prepared tiny AV-digits, for this test to damage."""
    copy = tmp_path / "data"
    shutil.copytree(trained[0], copy)
    return str(copy)


@pytest.mark.slow  # the session's trained run (fixture `data_copy`)
def test_training_data_without_one_readable_record_stops_in_one_line(data_copy, tmp_path):
    from data_pipeline.tensorflow_cpu import tf

    for shard in _train_shards(data_copy):  # valid TFRecord framing, no example inside
        count = sum(1 for _ in tf.data.TFRecordDataset(shard))
        with tf.io.TFRecordWriter(shard) as writer:
            for _ in range(count):
                writer.write(b"\x00garbage that is no tf.Example")
    workdir = tmp_path / "work"
    result = tiny_runs.run_main(tmp_path, workdir, data_copy, timeout=300)
    message = _error_line(result)
    # The tiny config reads 2 data shards: each gives 8 clips of a 16-clip global batch.
    assert re.fullmatch(
        r"dataset 'av_digits/\S+' \(train\): no readable record in 10 consecutive batches of 8 "
        r"\(80 records failed to parse or decode, from step 0 on\); the prepared data is "
        r"corrupt: prepare it again",
        message,
    ), message
    assert not (workdir / "checkpoints").exists() or not os.listdir(workdir / "checkpoints")


@pytest.mark.slow
def test_a_corrupt_shard_is_skipped_from_the_bad_record_on_and_training_goes_on(
    data_copy, tmp_path
):
    (shard,) = _train_shards(data_copy)
    with open(shard, "r+b") as f:  # one flipped byte in the middle: a CRC error
        f.seek(os.path.getsize(shard) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    workdir = tmp_path / "work"
    # Two epochs (6 steps): each reads the whole shard, so the second reads past the damage again.
    result = tiny_runs.run_main(tmp_path, workdir, data_copy, "--config.num_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [line for line in stderr_lines(result) if line.startswith("data loss: ")]
    assert reports, result.stderr[-3000:]
    for line in reports:
        assert re.fullmatch(
            rf'data loss: "{re.escape(shard)}" is unreadable \(corrupt or truncated TFRecord\) '
            r"from record \d+ on; skipping \d+ records of it",
            line,
        ), line
    history = _history(workdir)
    assert [h["step"] for h in history] == list(range(1, 7))
    assert all(np.isfinite(h["loss"]) for h in history)
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == ["4", "6"]


# -- A failing save -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_failing_save_stops_the_run_in_one_line_naming_the_last_good_checkpoint(
    trained, workdir, tmp_path
):
    shutil.rmtree(workdir / "checkpoints" / "12")

    def small_files_only():  # a full disk, as the kernel reports it to a write: EFBIG here
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    result = tiny_runs.run_main(tmp_path, workdir, trained[0], preexec_fn=small_files_only)
    message = _error_line(result)
    assert message.startswith(
        f"saving the checkpoint of step 12 in {workdir / 'checkpoints'} failed: "
        "[Errno 27] File too large"
    ), message
    assert message.endswith("; the run stops here. The last good checkpoint: step 8"), message
    assert "12" not in os.listdir(workdir / "checkpoints")


# -- metrics.jsonl after a resume -----------------------------------------------------------------


@pytest.mark.slow
def test_a_resumed_run_logs_each_step_once_and_ends_where_the_straight_run_ended(
    trained, workdir, tmp_path
):
    """As after a kill between the saves of steps 8 and 12 (the log is ahead of the newest
    checkpoint): the restart resumes from step 8, logs each step once, and ends with the very
    parameters, BatchNorm statistics and optimizer state of the run that was never stopped.
    Bit for bit: the input resumes at the step and all randomness is a function of the step
    and the sample index. (A process killed mid-save leaves a temporary directory orbax
    ignores, and a damaged checkpoint is set aside: the tests above.)"""
    shutil.rmtree(workdir / "checkpoints" / "12")
    result = tiny_runs.run_main(tmp_path, workdir, trained[0])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from the checkpoint of step 8" in result.stdout + result.stderr
    history = _history(workdir)
    assert [h["step"] for h in history] == list(range(1, 13))
    straight = _history(trained[1])
    for resumed, original in zip(history, straight):
        assert resumed["loss"] == pytest.approx(original["loss"], rel=1e-5), resumed["step"]
    resumed_state, straight_state = _final_state(workdir), _final_state(trained[1])
    assert len(resumed_state) == len(straight_state) > 0
    for a, b in zip(resumed_state, straight_state):
        np.testing.assert_array_equal(a, b)


def _final_state(workdir):
    """Every array of the train state in the workdir's step-12 checkpoint."""
    import jax
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(os.path.join(workdir, "checkpoints", "12", "default"))
    return [np.asarray(x) for x in jax.tree.leaves(state)]
