"""Running a user-facing command as a newcomer would: a fresh home, an empty working directory."""

import os
import pathlib
import subprocess
import sys
from collections.abc import Callable, Mapping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess:
    """`python *args` with `HOME=home`, no `$TFDS_DATA_DIR`, in `cwd`; output captured as text.

    The rest of the environment is the test's, updated with `env`; the repository goes first on
    PYTHONPATH (an installed checkout does not need it, a test run from another tree does).
    `preexec_fn` runs in the child before Python starts (e.g. to set a resource limit).
    """
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if k != "TFDS_DATA_DIR"}
    env.update(extra)
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
