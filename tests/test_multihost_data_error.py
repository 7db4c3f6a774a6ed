"""Multi-host, an input error on one host stops every host, in the same one line.

Two processes of one cluster (gloo CPU collectives, as tests/test_multihost_training.py): first
`stica_jax.loop.ShardBatches` alone over stand-in shards (seconds), then `python -m
stica_jax.main` on the tiny demo config (tests/tiny_runs.py) on a copy of the session's prepared
data in which only process 1's records are unreadable. Without the agreement in `ShardBatches`,
process 1 stops alone and process 0 waits in the train step's all-reduce until the coordination
service gives up on the job (both aborted with a native stack after 336 s here).
"""

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from data_pipeline.errors import UserError
from stica_jax import distributed, loop
from tests import tiny_demo_config, tiny_runs
from tests.command_line import ROOT

# Far over what the two runs take here (start-up and the first batch: both stop before the train
# step compiles), and no more than the earliest a hang ends: process 1, stopped alone, waits out
# the coordination service's shutdown barrier (300 s) before both abort.
TIMEOUT_S = 300


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class _Shard:
    """A shard whose batch `fail_at` raises `error` (when given); batch k holds k + 1."""

    skipped_records = 0

    def __init__(self, error=None, fail_at=1):
        self.error, self.fail_at, self.step = error, fail_at, 0

    def __next__(self):
        if self.error is not None and self.step == self.fail_at:
            raise self.error
        self.step += 1
        return {"x": np.full(2, self.step)}

    def stand_in_batch(self):
        return {"x": np.zeros(2, np.int64)}


# One process of the cluster: process 1's shard fails at its second batch (a `UserError` or,
# with "other", an OSError); prints the batches it gave and what `stop_if_any_host_failed` raised.
_PROCESS = """
import json, sys
from stica_jax import distributed
distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
from data_pipeline.errors import UserError
from stica_jax import loop
from tests.test_multihost_data_error import _Shard
error = None
if sys.argv[2] == "1":
    error = UserError("dataset 'd' (train): unreadable") if sys.argv[3] == "user" else OSError(
        "disk gone")
batches = loop.ShardBatches([_Shard(error)])
seen = [next(batches)["x"].tolist()]
batches.stop_if_any_host_failed()
seen.append(next(batches)["x"].tolist())
seen.append(next(batches)["x"].tolist())
try:
    batches.stop_if_any_host_failed()
except Exception as raised:
    seen.append([type(raised).__name__, str(raised)])
print("RESULT " + json.dumps(seen), flush=True)
"""

# Process 1's shard fails at once: the run's first batch stops both, before any step.
_FIRST_BATCH = """
import json, sys
from stica_jax import distributed
distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
from data_pipeline.errors import UserError
from stica_jax import loop
from tests.test_multihost_data_error import _Shard
error = UserError("dataset 'd' (train): unreadable") if sys.argv[2] == "1" else None
try:
    next(loop.ShardBatches([_Shard(error, fail_at=0)]))
    seen = ["no error"]
except Exception as raised:
    seen = [type(raised).__name__, str(raised)]
print("RESULT " + json.dumps(seen), flush=True)
"""


def _two_processes(script: str, *args: str) -> list:
    """What `script` printed after RESULT in each of two processes forming one cluster."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [env.get("PYTHONPATH")])])
    address = f"localhost:{_free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, address, str(i), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    results = []
    for out in outs:
        (line,) = [line for line in out.splitlines() if line.startswith("RESULT ")]
        results.append(json.loads(line[len("RESULT ") :]))
    return results


@pytest.mark.parametrize("kind", ["user", "other"])
def test_every_host_raises_the_error_of_the_host_whose_input_failed(kind):
    results = _two_processes(_PROCESS, kind)
    # Process 1 feeds stand-in rows from its failure on; process 0 reads on.
    assert results[0][:3] == [[1, 1], [2, 2], [3, 3]]
    assert results[1][:3] == [[1, 1], [0, 0], [0, 0]]
    if kind == "user":
        expected = ["InputError", "process 1 of 2: dataset 'd' (train): unreadable"]
        assert results[0][3] == results[1][3] == expected
    else:
        assert results[1][3] == ["OSError", "disk gone"]  # re-raised, with its traceback
        assert results[0][3] == ["RuntimeError", "process 1 of 2: OSError: disk gone"]


def test_a_first_batch_that_fails_stops_every_host_before_any_step():
    expected = ["InputError", "process 1 of 2: dataset 'd' (train): unreadable"]
    assert _two_processes(_FIRST_BATCH) == [expected, expected]


def test_one_host_raises_at_once_without_a_collective(monkeypatch):
    def no_collective(*args, **kwargs):
        raise AssertionError("a collective on a single host")

    monkeypatch.setattr(distributed, "first_failure", no_collective)
    batches = loop.ShardBatches([_Shard(UserError("unreadable"))])
    assert next(batches)["x"].tolist() == [1, 1]
    batches.stop_if_any_host_failed()
    with pytest.raises(UserError, match="^unreadable$"):
        next(batches)


def _spoil_the_records_of_process_1(data_dir):
    """Records of process 1 of 2 rewritten as garbage (valid TFRecord framing, no example).

    Chunks of `chunk_size` consecutive records are dealt to the hosts in turn
    (`data_pipeline.record_stream.host_records`): the tiny train split's 48 records in one file
    are chunks 0, 1, 2 of 16, and process 1 reads chunk 1 alone; process 0 reads 0 and 2.
    """
    from data_pipeline.input_config import InputConfig
    from data_pipeline.tensorflow_cpu import tf

    chunk_size = InputConfig.from_any(tiny_demo_config.get_config().input).chunk_size
    (shard,) = glob.glob(os.path.join(data_dir, "av_digits", "*", "*", "*-train.tfrecord*"))
    records = list(tf.data.TFRecordDataset(shard).as_numpy_iterator())
    assert len(records) == 3 * chunk_size, len(records)
    with tf.io.TFRecordWriter(shard) as writer:
        for i, record in enumerate(records):
            writer.write(b"\x00garbage that is no tf.Example" if i // chunk_size == 1 else record)


@pytest.mark.slow
def test_corrupt_data_on_one_host_stops_both_in_the_same_line(trained, tmp_path):
    """Two processes of two devices run the tiny demo on a copy of the session's data in which
    only process 1's records are unreadable: both stop within `TIMEOUT_S`, with status 2 and
    the same one line, and keep nothing. Process 1 fails on its first batch, so both stop at the
    run's first-batch check, before the train step compiles."""
    data_dir = str(tmp_path / "data")
    shutil.copytree(trained[0], data_dir)
    _spoil_the_records_of_process_1(data_dir)
    workdir = str(tmp_path / "work")
    env = {**os.environ, **tiny_runs.ENV, "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_NUM_CPU_DEVICES": "2"}
    port = _free_port()
    procs, outputs = [], []
    for i in range(2):
        out, err = tmp_path / f"stdout{i}", tmp_path / f"stderr{i}"
        with open(out, "w") as stdout, open(err, "w") as stderr:
            command = tiny_runs.main_command(
                workdir,
                data_dir,
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, *command], cwd=ROOT, env=env, stdout=stdout, stderr=stderr
                )
            )
        outputs.append((out, err))
    deadline = time.time() + TIMEOUT_S
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        hung = [i for i, proc in enumerate(procs) if proc.poll() is None]
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderrs = [err.read_text() for _, err in outputs]
    assert not hung, f"processes {hung} still ran after {TIMEOUT_S} s: " + "\n".join(
        s[-2000:] for s in stderrs
    )

    lines = []
    for i, (proc, stderr) in enumerate(zip(procs, stderrs)):
        assert proc.returncode == 2, (i, stderr[-3000:])
        assert "Traceback" not in stderr, (i, stderr[-3000:])
        (line,) = [line for line in stderr.splitlines() if "error: " in line]
        lines.append(line)
    assert lines[0] == lines[1], lines
    assert re.fullmatch(
        r"stica_jax\.main: error: process 1 of 2: dataset 'av_digits/\S+' \(train\): no "
        r"readable record in 10 consecutive batches of 8 \(80 records failed to parse or decode, "
        r"from step 0 on\); the prepared data is corrupt: prepare it again",
        lines[0],
    ), lines[0]
    assert "joined the cluster as process 0 of 2" in outputs[0][0].read_text()
    # Nothing of the step that process 1 fed with stand-in rows was kept.
    assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))
    checkpoints = os.path.join(workdir, "checkpoints")
    assert not os.path.exists(checkpoints) or not os.listdir(checkpoints)
