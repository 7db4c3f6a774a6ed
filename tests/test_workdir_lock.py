"""`stica_jax.workdir_lock`: one run per workdir, decided by the file system.

Runs that start at the same instant (separate processes, as two users' jobs are), a lock of
another host, a pid that was reused, and a file that is no lock. (A second run refused by the
command itself, and a dead run's lock taken over: tests/test_reliability.py.)
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from stica_jax import workdir_lock
from stica_jax.errors import WorkdirError
from tests.command_line import ROOT

_RACER = textwrap.dedent(
    """
    import sys, time
    from stica_jax import workdir_lock
    from stica_jax.errors import WorkdirError
    workdir, start = sys.argv[1], float(sys.argv[2])
    while time.time() < start:
        pass
    try:
        lock = workdir_lock.acquire(workdir)
    except WorkdirError as error:
        print("refused:", error, flush=True)
    else:
        print("won", flush=True)
        time.sleep(4)  # hold it while the others look
        lock.release()
    """
)


def test_of_runs_starting_at_the_same_instant_exactly_one_gets_the_workdir(tmp_path):
    workdir = tmp_path / "work"
    start = time.time() + 8  # every racer imported and spinning by then
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(workdir), str(start)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(r.pid, r.communicate(timeout=120)[0].strip()) for r in racers]
    winners = [pid for pid, out in results if out == "won"]
    assert len(winners) == 1, results
    for pid, out in results:
        if pid != winners[0]:
            assert out.startswith(
                f"refused: {workdir} is in use by another run (pid {winners[0]} "
            ), out
    assert not (workdir / workdir_lock.LOCK_FILE).exists()  # released by the winner
    assert [p.name for p in workdir.iterdir()] == []  # no temporary or set-aside files left


def _write_lock(workdir, **fields):
    workdir.mkdir(exist_ok=True)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": "2026-01-02 03:04:05"}
    holder["process_start"] = workdir_lock._process_start(os.getpid())
    holder.update(fields)
    (workdir / workdir_lock.LOCK_FILE).write_text(json.dumps(holder))


def test_a_lock_of_another_host_is_refused_naming_the_file_to_remove(tmp_path):
    workdir = tmp_path / "work"
    _write_lock(workdir, host="tpu-vm-7", pid=1234, process_start=99)
    with pytest.raises(WorkdirError) as refused:
        workdir_lock.acquire(str(workdir))
    assert str(refused.value) == (
        f"{workdir} is in use by another run (pid 1234 on host tpu-vm-7, started "
        f"2026-01-02 03:04:05); if that run is gone, remove {workdir / workdir_lock.LOCK_FILE}"
    )


def test_a_reused_pid_is_told_from_the_run_that_wrote_the_lock(tmp_path):
    """The pid runs (it is this test's), but it started at another time than the lock's run."""
    workdir = tmp_path / "work"
    _write_lock(workdir, process_start=workdir_lock._process_start(os.getpid()) - 1)
    with workdir_lock.acquire(str(workdir)) as lock:
        assert json.loads((workdir / workdir_lock.LOCK_FILE).read_text())["pid"] == os.getpid()
        assert lock.holder.process_start == workdir_lock._process_start(os.getpid())
    assert not (workdir / workdir_lock.LOCK_FILE).exists()
    # The same pid with its own start time: the run is alive, so the workdir is refused.
    _write_lock(workdir)
    with pytest.raises(WorkdirError, match=r"is in use by another run \(pid \d+ on host "):
        workdir_lock.acquire(str(workdir))


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"host": "h", "pid": 1}'])
def test_a_file_that_is_no_lock_is_refused_and_left_alone(tmp_path, content):
    workdir = tmp_path / "work"
    workdir.mkdir()
    path = workdir / workdir_lock.LOCK_FILE
    path.write_text(content)
    with pytest.raises(WorkdirError) as refused:
        workdir_lock.acquire(str(workdir))
    message = str(refused.value)
    assert message.startswith(f"{path} is not a lock file of stica_jax (")
    assert message.endswith("); if no run uses this workdir, remove it")
    assert path.read_text() == content
