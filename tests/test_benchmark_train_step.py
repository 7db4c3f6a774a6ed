"""`benchmarks.train_step` on CPU: its import chain is TensorFlow-free, the tiny config runs
and prints finite numbers in the expected lines, an out-of-memory batch size is reported and
the larger ones skipped, and the FLOP counts of the SOTA step are consistent (shapes only).
No timing is asserted."""

import json
import math
import os
import re
import subprocess
import sys

import jax
import pytest

from benchmarks.measured_step import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMBER = r"([-+0-9.e]+|nan|inf)"


@pytest.fixture(scope="module")
def bench():
    from benchmarks import train_step

    return train_step


def test_import_chain_has_no_tensorflow():
    code = """
import sys
from benchmarks import measured_step, train_step
measured_step.load_config(tiny=False); measured_step.load_config(tiny=True)
import stica_jax.step, stica_jax.models.summary, configs.sota, tests.tiny
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets", "clu"))
print("BAD", bad)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert out.returncode == 0, out.stderr
    assert "BAD []" in out.stdout, out.stdout


def test_is_oom(bench):
    assert bench.is_oom(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"))
    assert bench.is_oom(MemoryError())
    assert not bench.is_oom(ValueError("shapes do not match"))


@pytest.mark.slow
def test_tiny_run_lines_numbers_and_oom(bench, monkeypatch, capsys, tmp_path):
    real = bench.synthetic_batch

    def batch_or_oom(config, global_batch, seed=0, video_dtype="float32"):  # OOM when larger
        if global_batch > 4:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.0TiB")
        return real(config, global_batch, seed, video_dtype)

    monkeypatch.setattr(bench, "synthetic_batch", batch_or_oom)
    path = tmp_path / "out.json"
    out = bench.main(
        [
            "--tiny",
            "--batch_sizes=2,64,128",
            "--steps=2",
            "--warmup=1",
            "--devices=2",
            f"--json={path}",
        ]
    )
    lines = capsys.readouterr().out.splitlines()

    assert out["ok"] and out["config"] == "tiny" and out["devices"] == 2
    assert lines[0].startswith("train_step benchmark: config=tiny dtype=float32")
    ran = [line for line in lines if line.startswith("batch/device=2 ")]
    assert len(ran) == 1, lines
    m = re.fullmatch(
        rf"batch/device=2 global_batch=4 clips/s={NUMBER} step_ms={NUMBER} MFU={NUMBER}% "
        rf"MFU_traced={NUMBER}% TFLOP/s/device={NUMBER} GFLOP/step/device={NUMBER} "
        rf"compile_s={NUMBER} loss={NUMBER} grad_norm={NUMBER} finite=yes "
        rf"h2d_ms={NUMBER}/{NUMBER} h2d_MB={NUMBER}/{NUMBER}",
        ran[0],
    )
    assert m, ran[0]
    values = [float(v) for v in m.groups()]
    assert all(math.isfinite(v) for v in values) and all(v > 0 for v in values[:7]), values
    # One global batch of 4 tiny clips: 2 views of 16×64×64×3 float32 + 40×99 audio.
    video_mb, audio_mb = 2 * 4 * 16 * 64 * 64 * 3 * 4 / 1e6, 4 * 40 * 99 * 4 / 1e6
    r = out["results"][0]
    assert r["h2d"]["float32"]["mb"] == pytest.approx(video_mb + audio_mb + 16e-6)
    assert r["h2d"]["bfloat16"]["mb"] == pytest.approx(video_mb / 2 + audio_mb + 16e-6)
    assert any(
        line.startswith("batch/device=64 OOM (RuntimeError: RESOURCE_EXHAUSTED") for line in lines
    )
    assert any(line.startswith("batch/device=128 skipped") for line in lines)
    summary = lines[-1]
    assert summary.startswith("summary: config=tiny variant=baseline") and summary.endswith("OK")
    assert "batch/device=2 " in summary and "oom=[64]" in summary and "ran=[2]" in summary

    assert [x["status"] for x in out["results"]][1] == "OOM"
    assert r["finite"] and math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])
    # fwd + bwd ≈ 3 × forward (less the first convolution's input gradient).
    assert 2.5 < r["macs_train_step_per_device"] / r["macs_forward_per_device"] < 3.2
    assert json.loads(path.read_text())["summary"] == summary


@pytest.mark.slow
def test_sota_flop_counts_from_shapes(bench):
    """The SOTA step traces (shapes only) and its forward count matches the model summary."""
    from stica_jax import step
    from stica_jax.models.summary import summarize

    config = load_config(tiny=False)
    assert config.model.dtype == "bfloat16" and config.input.num_frames == 60
    macs = bench.step_macs(config, 2, step.make_mesh(jax.devices()[:1]))
    per_clip = summarize(config)["macs_train_forward"]
    # The forward adds only the NCE similarity products to 2 × the per-clip model forward.
    assert 2 * per_clip <= macs["forward"] < 2 * per_clip * 1.001
    assert 2.9 < macs["train_step"] / macs["forward"] < 3.05
