"""`python -m stica_jax.compile_check`: the train step compiled by XLA:TPU for a slice that is
not there (libtpu, installed by the test extra, needs no TPU), and what it reports."""

import contextlib
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from stica_jax import cli, tpu_chips
from stica_jax.models.stica import build_model
from stica_jax.shapes import train_batch_shapes
from tests import tiny_runs
from tests.command_line import ROOT, newcomer_dirs, run_fresh

# XLA's least optimisation effort, for run time and for fitting memory (JAX's
# `jax_exec_time_optimization_effort` / `jax_memory_fitting_effort`, both -1): XLA:TPU compiles
# the tiny step in half the time (130 -> 63 s on 2 cores) with the same arguments and
# collectives, and more temporaries (0.10 -> 0.23 GiB a chip), which the tests do not pin.
# A user's check runs at the default effort (0).
LEAST_EFFORT = {"JAX_EXEC_TIME_OPTIMIZATION_EFFORT": "-1", "JAX_MEMORY_FITTING_EFFORT": "-1"}


def _compile_check(tmp_path, *args, env=None):
    home, cwd = newcomer_dirs(tmp_path)
    return run_fresh(
        ["-m", "stica_jax.compile_check", *args],
        home=str(home),
        cwd=str(cwd),
        env=env,
        timeout=900,
    )


def _fake_pci(root, devices):
    for i, (vendor, device) in enumerate(devices):
        d = root / f"0000:00:0{i}.0"
        d.mkdir(parents=True)
        (d / "vendor").write_text(vendor + "\n")
        (d / "device").write_text(device + "\n")
    return str(root)


def test_a_tpu_host_has_a_tpu_chip_on_its_pci_bus_not_only_libtpu(tmp_path):
    """The console rule (`cli.tpu_host`): libtpu alone (installed here for the compile check)
    does not make a TPU VM. A Google NIC (gVNIC, device 0x0042) is not a TPU either."""
    gce_cpu_vm = _fake_pci(tmp_path / "cpu", [("0x1ae0", "0x0042"), ("0x8086", "0x1237")])
    v5e_vm = _fake_pci(tmp_path / "tpu", [("0x1ae0", "0x0042"), ("0x1ae0", "0x0063")])
    gpu_vm = _fake_pci(tmp_path / "gpu", [("0x10de", "0x2330")])
    assert not cli.tpu_chips_attached(gce_cpu_vm)
    assert cli.tpu_chips_attached(v5e_vm)
    assert not cli.tpu_chips_attached(gpu_vm)
    assert not cli.tpu_chips_attached(str(tmp_path / "no such bus"))
    # This machine: libtpu installed, no TPU.
    assert not cli.tpu_host()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--topology=v5e"], "--topology=v5e: expected GENERATION:SHAPE, e.g. v5e:4x4"),
        (["--topology=v9z:2x2"], "--topology=v9z:2x2: unknown TPU generation 'v9z'; expected"),
        (["--topology=v5e:2x2", "--chips_per_host=2by2"], "--chips_per_host=2by2: expected e.g."),
    ],
)
def test_a_slice_it_does_not_know_is_one_line_with_status_2(args, message, tmp_path):
    result = _compile_check(tmp_path, f"--config={tiny_runs.CONFIG}", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines == [f"stica_jax.compile_check: error: {lines[0].split(': error: ')[1]}"]
    assert lines[0].split(": error: ")[1].startswith(message), lines


def test_the_chips_carry_the_numbers_of_their_architecture_pages():
    """Peak bf16 FLOP/s, HBM and its bandwidth as Cloud TPU's system-architecture pages give
    them; v4 and v5p are the megacore chips (two TensorCores, one device)."""
    want = {
        "v4": (275e12, 32, 1200e9, True),
        "v5e": (197e12, 16, 819e9, False),
        "v5p": (459e12, 95, 2765e9, True),
        "v6e": (918e12, 32, 1638e9, False),
    }
    got = {
        name: (c.peak_bf16_flops, c.hbm_bytes / 2**30, c.hbm_bytes_per_s, c.megacore)
        for name, c in tpu_chips.CHIPS.items()
    }
    assert got == want
    assert tpu_chips.parse_topology("v5p:2x2x4") == ("v5p", (2, 2, 4))
    assert tpu_chips.parse_chips_per_host("1x2") == (1, 2, 1)


@contextlib.contextmanager
def _libtpu_held():
    """A process that holds libtpu (the devices of a v5e:2x2 slice, compile-only) meanwhile.

    libtpu's lockfile is for the process that owns the TPU chips; a compile-only topology owns
    none. The two compile-check tests of CI once ran at the same time and the second stopped at
    the lock (`aot.topology_devices` now sets ALLOW_MULTIPLE_LIBTPU_LOAD; the holder is
    started without it, as a user's other process would be)."""
    script = (
        "import sys; from stica_jax import aot; d = aot.topology_devices('v5e:2x2'); "
        "print(len(d), flush=True); sys.stdin.read()"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("ALLOW_MULTIPLE_LIBTPU_LOAD", None)
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "4"  # it holds libtpu now
        yield
    finally:
        holder.communicate(input="", timeout=60)


@pytest.mark.slow
def test_the_tiny_step_compiles_for_a_two_host_tpu_slice(tmp_path):
    """The tiny demo's train step on a v5e 2x2 slice of two hosts (2 chips each), as XLA:TPU
    compiles it. Its numbers are checked against what the step must do, counted from the model
    and the batch here, not from the compiled program:

    - every parameter's gradient is summed over the chips at least once, in float32 (the
      model computes in float32), so the all-reduces move at least 4 bytes per parameter; and
      at most twice that plus BatchNorm statistics and the loss terms (a few KiB): not once per
      use of each weight;
    - the NCE loss all-gathers the embeddings of the global batch: an all-gather of
      16 clips × 16-d float32 = 1 KiB per gather;
    - each chip holds the replicated train state (parameters, SGD momentum, BatchNorm
      statistics) and its 4 clips: arguments at least their unpadded bytes, at most 8× (TPU
      tiles pad small arrays: a 16-vector takes a 128-lane tile);
    - the program fits a v5e chip's 16 GiB many times over.
    """
    out = tmp_path / "report.json"
    hlo_out = tmp_path / "step.hlo"
    result = _compile_check(
        tmp_path,
        f"--config={tiny_runs.CONFIG}",
        "--topology=v5e:2x2",
        "--chips_per_host=1x2",
        f"--json={out}",
        f"--hlo_out={hlo_out}",
        env=LEAST_EFFORT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-2000:]  # libtpu's start-up lines stay unprinted
    r = json.loads(out.read_text())
    assert (r["chips"], r["hosts"], r["batch_per_chip"]) == (4, 2, 4)
    assert "v5e:2x2: 4 chips (TPU v5e) on 2 host(s), 4 clips per chip" in result.stdout
    assert "HBM: fits" in result.stdout

    from tests.tiny_demo_config import get_config

    config = get_config()
    model = nnx.eval_shape(lambda: build_model(config.model, config.crops, rngs=nnx.Rngs(0)))
    params = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    stats = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
    assert config.model.dtype == "float32"
    reduce = r["collectives"]["all-reduce"]
    assert 4 * params <= reduce["bytes"] <= 2 * 4 * params + 16 * 1024, (reduce, params)
    gather = r["collectives"]["all-gather"]
    assert gather["count"] >= 1 and gather["max_bytes"] == 16 * config.model.embed_dim * 4
    state_bytes = 4 * (2 * params + stats)
    batch_bytes = sum(4 * math.prod(shape) for shape, _ in train_batch_shapes(config, 4).values())
    assert state_bytes + batch_bytes <= r["argument_bytes"] <= 8 * (state_bytes + batch_bytes)
    assert r["temp_bytes"] > 0 and r["total_bytes"] < r["hbm_bytes"] / 10
    assert r["flops"] > 0 and r["bytes_accessed"] >= r["argument_bytes"]
    np.testing.assert_allclose(
        r["roofline_seconds"], max(r["flops"] / 197e12, r["bytes_accessed"] / 819e9)
    )
    assert "all-gather" in hlo_out.read_text()


@pytest.mark.slow
def test_a_step_that_does_not_fit_a_chip_is_one_line_with_status_2(tmp_path):
    """8192 clips per chip of the tiny demo: the input alone is ~3.6 GiB a chip, its
    activations far more than a v5e chip's 16 GiB; XLA:TPU refuses the program. (Without
    feature crops and with average pooling: XLA:TPU refuses it in half the time.)

    Another process holds libtpu meanwhile (`_libtpu_held`): the check still gets its slice."""
    with _libtpu_held():
        result = _compile_check(
            tmp_path,
            f"--config={tiny_runs.CONFIG}",
            "--topology=v5e:2x2",
            "--batch_per_device=8192",
            "--config.crops.enabled=False",
            "--config.model.pooling=avg",
            env={**LEAST_EFFORT, "ALLOW_MULTIPLE_LIBTPU_LOAD": None},
        )
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "stica_jax.compile_check: error: v5e:2x2 at 8192 clips per chip does not fit: "
    ), lines
