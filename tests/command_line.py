"""Running a user-facing command as a newcomer would: a fresh home, an empty working directory."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_fresh(
    args: list[str], *, home: str, cwd: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python *args` with `HOME=home`, no `$TFDS_DATA_DIR`, in `cwd`; output captured as text.

    The rest of the environment is the test's; the repository goes first on PYTHONPATH (an
    installed checkout does not need it, a test run from another tree does).
    """
    env = {k: v for k, v in os.environ.items() if k != "TFDS_DATA_DIR"}
    env["HOME"] = home
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stderr.splitlines()
