"""`python -m stica_jax.main` on the tiny demo config as a subprocess, and the one trained tiny
workdir that the subprocess tests share (tests/test_reliability.py, tests/test_multihost_training.py).

Every run here has the same environment: the CPU with 4 devices (a real data-parallel mesh).
So every run of the same config compiles the same programs, and the session's compilation cache
(tests/conftest.py) pays for each train step once: a restart or a damaged copy of the trained
workdir costs seconds, not a compile.
"""

import os
import pathlib
import shutil

import filelock

from tests.command_line import ROOT, newcomer_dirs, run_fresh

CONFIG = os.path.join(ROOT, "tests", "tiny_demo_config.py")
ENV = {"JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "4"}


def main_command(workdir, data_dir, *flags) -> list[str]:
    """The arguments of `python -m stica_jax.main`: the tiny demo without online evaluation."""
    return [
        "-m",
        "stica_jax.main",
        f"--config={CONFIG}",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        "--config.eval.method=none",
        *flags,
    ]


def run_main(tmp_path, workdir, data_dir, *flags, preexec_fn=None, timeout=600):
    """A run as a newcomer starts it: from an empty working directory with an empty home."""
    home, cwd = newcomer_dirs(tmp_path)
    return run_fresh(
        main_command(workdir, data_dir, *flags),
        home=str(home),
        cwd=str(cwd),
        env=ENV,
        preexec_fn=preexec_fn,
        timeout=timeout,
    )


def train_once(shared_dir) -> tuple[str, pathlib.Path]:
    """(data_dir, workdir): the tiny AV-digits, and 12 steps trained on it (checkpoints 4, 8, 12),
    made once per session under `shared_dir`: the first xdist worker to need it trains, the
    others wait for it. Tests copy the workdir before they change anything in it."""
    base = shared_dir / "trained"
    data_dir, workdir = base / "data", base / "work"
    with filelock.FileLock(str(shared_dir / "trained.lock")):
        if not (base / "done").exists():
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            result = run_main(base, workdir, data_dir)
            assert result.returncode == 0, result.stderr[-3000:]
            (base / "done").write_text("")
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == ["4", "8", "12"]
    return str(data_dir), workdir
