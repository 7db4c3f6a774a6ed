"""Running a user-facing command as a newcomer would: a fresh home, an empty working directory."""

import os
import pathlib
import subprocess
import sys
from collections.abc import Callable, Mapping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# XLA:CPU settings the suite runs with (tests/conftest.py puts them in XLA_FLAGS for every worker
# and subprocess): programs that compile in less time and run slower. A test that needs a
# user's build (speed, or numbers measured with it) removes them (`users_xla_flags`).
SUITE_XLA_FLAGS = {
    # LLVM without its optimisation passes (XLA's own HLO optimisations still run): the tiny
    # train step 33 s -> 19 s of compile.
    "--xla_backend_optimization_level": "0",
    # Elementwise fusions through XLA's older IR emitters instead of the MLIR fusion emitters:
    # the tiny demo's train step compiles in 23-25 s instead of 28-32 s, single-threaded (a
    # process that lowers and compiles it: 50-51 s of CPU instead of 62-70 s), and runs at the
    # same speed per step (benchmarks/RESULTS.md, "Test suite wall time").
    "--xla_cpu_use_fusion_emitters": "false",
}


def users_xla_flags(flags: str) -> str:
    """`flags` (an XLA_FLAGS value) without the suite's `SUITE_XLA_FLAGS`."""
    return " ".join(f for f in flags.split() if f.split("=")[0] not in SUITE_XLA_FLAGS)


def newcomer_dirs(base: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """(home, cwd): `base/home` and `base/cwd`, made empty if absent, for `run_fresh`."""
    home, cwd = pathlib.Path(base) / "home", pathlib.Path(base) / "cwd"
    home.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(exist_ok=True)
    return home, cwd


def run_fresh(
    args: list[str],
    *,
    home: str,
    cwd: str,
    timeout: float = 600,
    env: Mapping[str, str | None] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess:
    """`python *args` with `HOME=home`, no `$TFDS_DATA_DIR`, in `cwd`; output captured as text.

    The rest of the environment is the test's, updated with `env` (a value of None removes the
    variable); the repository goes first on PYTHONPATH (an installed checkout does not need it,
    a test run from another tree does).
    `preexec_fn` runs in the child before Python starts (e.g. to set a resource limit).
    """
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if k != "TFDS_DATA_DIR"}
    env.update({k: v for k, v in extra.items() if v is not None})
    for k in [k for k, v in extra.items() if v is None]:
        env.pop(k, None)
    env["HOME"] = home
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stderr.splitlines()
