"""`python -m benchmarks.torch_baseline` on CPU: its forward FLOPs equal ours (counted independently:
torch's FlopCounterMode on its own model vs our jaxpr count of ours), its feature crops are
windows at uniform random positions, its NCE is the InfoNCE of a NumPy reference, the SOTA loss
has the official pairing's 12 crop terms, it imports no JAX, and one tiny step runs and is
finite. No timing is asserted."""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.command_line import newcomer_dirs

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMBER = r"([-+0-9.e]+|nan|inf)"


@pytest.fixture(scope="module")
def tb():
    from benchmarks import torch_baseline

    return torch_baseline


def _official_crop_nce_count(crops) -> int:
    """NCE evaluations of the official crop pairing (spec §6): per family, one symmetric
    large↔large term (2 NCE) when there are ≥ 2 large crops, plus large × small terms."""
    count = 0
    for family in ("space", "time"):
        n_large, n_small = crops[f"n_{family}_large"], crops[f"n_{family}_small"]
        count += 2 * (n_large >= 2) + n_large * n_small
    return count


def test_sota_forward_flops_equal_ours(tb):
    from stica_jax.models.summary import summarize

    config = tb.load_config(tiny=False)
    batch = 2
    flops = tb.count_flops(config, batch)
    # The loss's similarity products [B, D] x [D, B]: 4 cross-modal NCE (2 views, both
    # directions) + the official crop pairing's NCE, 2·B·B·D FLOPs each.
    nce_terms = 4 + _official_crop_nce_count(config.crops)
    assert nce_terms == 18
    loss_flops = nce_terms * 2 * batch * batch * config.model.embed_dim
    ours = 2 * summarize(config)["macs_train_forward"]  # per clip: 2 views, audio, crops, heads
    # Exactly equal: both count 2 × the multiply-adds of every convolution and matrix product
    # (torch's attention via SDPA, ours via einsums; LayerNorm, BN, softmax, means uncounted).
    assert flops["forward"] - loss_flops == batch * ours
    # Most of it is the two views through torchvision's own r2plus1d_18 (its FLOPs counted on
    # the torchvision module, fc removed, at the config's 60 × 112²: 304.9 G a view); the audio
    # net, pooling, heads and crops add the rest, under 1 % (measured 3.2 G of 613.1 G).
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    video_net = torchvision.models.video.r2plus1d_18()
    video_net.fc = torch.nn.Identity()
    i = config.input
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        video_net.to("meta")(torch.empty(1, 3, i.num_frames, i.crop_size, i.crop_size))
    two_views = 2 * counter.get_total_flops()
    per_clip = (flops["forward"] - loss_flops) / batch
    assert two_views < per_clip < 1.01 * two_views, (per_clip, two_views)
    # Backward ≈ 2 × forward (the first convolution needs no input gradient).
    assert 2.9 < flops["train_step"] / flops["forward"] < 3.05


@pytest.mark.slow
def test_sota_forward_flops_match_the_jax_step_count(tb):
    """Against train_step.py's count of our whole forward (its loss pairs crops its own way:
    the difference is at most the similarity products, < 1e-7 of the total)."""
    import jax

    from benchmarks import train_step
    from benchmarks.measured_step import load_config
    from stica_jax import step

    config = load_config(tiny=False)
    ours = 2 * train_step.step_macs(config, 2, step.make_mesh(jax.devices()[:1]))["forward"]
    theirs = tb.count_flops(tb.load_config(tiny=False), 2)["forward"]
    assert abs(theirs - ours) / ours < 1e-7


def test_sota_loss_has_the_official_twelve_crop_terms(tb):
    config = tb.load_config(tiny=False)
    with torch.device("meta"):
        model = tb.STiCATorch(config).train()
        _, aux = model(**tb.synthetic_batch_meta(config, 2))
    assert aux["crop_terms"] == 12  # spec §6: 1 + 8 spatial, 1 + 2 temporal


def test_crops_are_windows_at_every_valid_position(tb):
    torch.manual_seed(0)
    b, c, t, h, w = 3, 2, 8, 7, 7
    fmap = torch.arange(b * c * t * h * w, dtype=torch.float32).reshape(b, c, t, h, w)
    size, seen = 4, set()
    for _ in range(40):
        crops = tb.spatial_crops(fmap, size, 2).reshape(b, 2, c, t, size, size)
        for i in range(b):
            for j in range(2):
                windows = [
                    (y, x)
                    for y in range(h - size + 1)
                    for x in range(w - size + 1)
                    if torch.equal(crops[i, j], fmap[i, :, :, y : y + size, x : x + size])
                ]
                assert len(windows) == 1
                seen.add(windows[0])
    assert seen == {(y, x) for y in range(h - size + 1) for x in range(w - size + 1)}

    starts = set()
    for _ in range(40):
        crops = tb.temporal_crops(fmap, 6, 1).reshape(b, c, 6, h, w)
        for i in range(b):
            found = [s for s in range(t - 6 + 1) if torch.equal(crops[i], fmap[i, :, s : s + 6])]
            assert len(found) == 1
            starts.add(found[0])
    assert starts == {0, 1, 2}


def test_nce_is_infonce_with_detached_keys(tb):
    rng = np.random.default_rng(0)
    q = torch.tensor(rng.standard_normal((5, 8)), dtype=torch.float32, requires_grad=True)
    k = torch.tensor(rng.standard_normal((5, 8)), dtype=torch.float32, requires_grad=True)
    loss = tb.nce(q, k, 0.5)
    logits = q.detach().numpy() @ k.detach().numpy().T / 0.5
    ref = np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits))
    np.testing.assert_allclose(float(loss.detach()), ref, rtol=1e-5)
    loss.backward()
    assert k.grad is None and q.grad is not None


def test_imports_no_jax():
    code = """
import sys
from benchmarks import torch_baseline as b
b.load_config(tiny=False)
print("JAX", sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "tensorflow")))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "JAX []" in out.stdout, out.stdout


@pytest.mark.slow
def test_tiny_cpu_step_runs_and_is_finite(tmp_path):
    """The script as a user runs it (empty working directory, empty HOME), one tiny step."""
    home, cwd = newcomer_dirs(tmp_path)
    env = dict(os.environ, HOME=str(home), PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="")
    path = tmp_path / "out.json"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.torch_baseline",
            "--tiny",
            "--device=cpu",
            "--dtype=float32",
            "--batch_sizes=2",
            "--steps=1",
            "--warmup=0",
            "--layouts=channels_last_3d",
            f"--json={path}",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("torch_baseline: config=tiny dtype=float32")
    line = next(x for x in lines if x.startswith("batch/device=2 "))
    m = re.fullmatch(
        rf"batch/device=2 global_batch=2 clips/s={NUMBER} step_ms={NUMBER} MFU={NUMBER}% "
        rf"MFU_traced={NUMBER}% TFLOP/s/device={NUMBER} GFLOP/step/device={NUMBER} "
        rf"compile_s={NUMBER} loss={NUMBER} grad_norm={NUMBER} finite=yes",
        line,
    )
    assert m, line
    values = [float(v) for v in m.groups()]
    assert all(math.isfinite(v) and v > 0 for v in values), values
    assert lines[-1].startswith("summary: framework=torch config=tiny") and lines[-1].endswith("OK")
    data = json.loads(path.read_text())
    assert data["ok"] and data["results"][0]["variant"] == "eager/channels_last_3d"
