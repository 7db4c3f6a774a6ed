"""Test set-up: eight fake CPU devices for the data-parallel tests (before JAX starts), and one
JAX compilation cache for the whole session.

The cache: most of the suite's time is XLA compiling the same few tiny programs again, in each
xdist worker and in every `python -m stica_jax....` subprocess a test starts (a restart, a
second host, a newcomer's first run). The environment variables below are set here, before JAX
is imported, in the process that starts pytest; xdist workers and every subprocess inherit them,
so all of them read and write one cache. It lives for one session (a new temporary directory,
removed at the end: no state leaks between runs), and it is only a cache: a hit runs the same
compiled program a miss would compile. `jax_compilation_cache_max_size` turns on the cache's
file lock, which keeps one process from reading an entry another is still writing. A cache
directory already in the environment is used as it is (and kept).
"""

import os
import shutil
import tempfile

from tests.command_line import SUITE_XLA_FLAGS

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="stica-jax-test-cache-")
    os.environ["STICA_JAX_TEST_CACHE_OWNER"] = str(os.getpid())
# The suite runs on the CPU (fake devices). The test extra installs libtpu (for the TPU compile
# check), and JAX would otherwise try to start a TPU backend in every process first.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))
# The suite's XLA:CPU settings (tests/command_line.py, `SUITE_XLA_FLAGS`): faster compiles, slower
# programs, and the suite is compile-bound. Float results differ from the default build's at
# rounding level (different instruction selection), so no test may hold a number measured with
# another build. A setting already in XLA_FLAGS is left as it is.
for _name, _value in SUITE_XLA_FLAGS.items():
    if _name not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_name}={_value}").strip()

try:
    # torch and torchvision (which loads triton) must be imported before TensorFlow: loading
    # triton after TF segfaults the process. The export tests use torch, the data tests TF.
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass

import jax  # noqa: E402 (after the environment above)
import pytest  # noqa: E402

# A normal user's session: files the project writes for people must come out 0644 (the
# file-mode tests), whatever umask the machine running the suite has.
os.umask(0o022)

jax.config.update("jax_num_cpu_devices", 8)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory, worker_id):
    """A directory of this test session shared by its xdist workers (one each without xdist)."""
    if worker_id == "master":
        return tmp_path_factory.mktemp("shared")
    return tmp_path_factory.getbasetemp().parent  # the session's, above each worker's


@pytest.fixture(scope="session")
def trained(shared_dir):
    """(data_dir, workdir) of the tiny demo trained for 12 steps, once per session
    (tests/tiny_runs.py): for tests that restart, damage (a copy of) or compare with it."""
    from tests import tiny_runs

    return tiny_runs.train_once(shared_dir)


def pytest_collection_modifyitems(items):
    """Slow tests first (a stable sort). With xdist handing out one test at a time
    (`--maxschedchunk=1` in setup.cfg), the multi-minute ones start at once, spread over the
    workers, and the fast ones fill the gaps, instead of one slow test running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_unconfigure(config):
    """The process that made the session's compilation cache removes it."""
    if os.environ.get("STICA_JAX_TEST_CACHE_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
