"""`python -m stica_jax.export`: --config and --workdir."""

import json
import os
import pathlib
import stat
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from stica_jax.export import torch as export
from tests.command_line import run_fresh
from tests.tiny import tiny_config

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stica_jax.export", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_needs_exactly_one_source(tmp_path):
    result = run_cli(f"--out={tmp_path}")
    assert result.returncode != 0
    assert "exactly one of --workdir or --config" in result.stderr


@pytest.mark.parametrize(
    "source, message",
    [
        ("--workdir={tmp}/no_run", "config.json not found"),
        ("--config=tests/tiny_demo_config.py", "Slim variants cannot be exported to PyTorch."),
    ],
)
def test_user_errors_are_one_line_with_exit_2(tmp_path, source, message):
    """A workdir that is not one, a slim model: one line on stderr, status 2, no traceback."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    source = source.format(tmp=tmp_path).replace("tests/", f"{REPO}/tests/")
    result = run_fresh(
        ["-m", "stica_jax.export", source, f"--out={tmp_path}/out"],
        home=str(home),
        cwd=str(cwd),
        env={"JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()  # nothing but the error: no start-up lines either
    assert line.startswith("stica_jax.export: error: ") and message in line, line
    assert os.listdir(cwd) == []


def test_workdir_export_restores_the_checkpoint(monkeypatch, tmp_path):
    """--workdir goes through `restore.restore_model(workdir, step)`."""
    config = tiny_config()
    calls = []

    def restore_model(workdir, step=None):
        from stica_jax.models.stica import build_model

        calls.append((workdir, step))
        model = nnx.eval_shape(lambda: build_model(config.model, config.crops, rngs=nnx.Rngs(0)))
        return config, model, 1000

    from stica_jax import restore
    from stica_jax.export import to_torch

    assert to_torch.restore is restore  # the module export_from_workdir restores through
    monkeypatch.setattr(restore, "restore_model", restore_model)
    # The tiny model is refused, after the checkpoint was asked for the right step.
    with pytest.raises(export.UnsupportedArchitectureError, match="no torchvision counterpart"):
        export.export_from_workdir("/some/workdir", str(tmp_path), step=1000)
    assert calls == [("/some/workdir", 1000)]


@pytest.mark.slow
def test_cli_exports_a_fresh_model_that_pytorch_loads(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from stica_jax.export import torch_modules

    result = run_cli("--config=configs/sota.py", f"--out={tmp_path}", "--seed=3")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / export.MANIFEST_FILE).read_text())
    assert manifest["step"] == 0 and manifest["config"]["model"]["pooling"] == "transformer"
    assert set(manifest["files"]) == {export.VIDEO_FILE, export.AUDIO_FILE, export.HEADS_FILE}
    net = torch_modules.load_export(tmp_path)  # strict loads of all three files
    with torch.no_grad():
        z = net.embed_video(torch.randn(1, 3, 8, 32, 32))
    assert z.shape == (1, 256)
    np.testing.assert_allclose(z.norm(dim=-1).numpy(), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_cli_exports_a_real_training_checkpoint(tmp_path):
    """--workdir on an orbax checkpoint written by the trainer's own checkpoint code."""
    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    from safetensors.numpy import load_file

    from configs import sota
    from stica_jax import checkpointing, train

    config = sota.get_config()
    config.model.dtype = "float32"
    _, _, state = train.create_train_state(config)
    state = state.replace(step=jnp.int32(7), params=jax.tree.map(lambda x: x + 0.5, state.params))
    workdir = tmp_path / "work"
    checkpointing.save_config(str(workdir), config)
    manager = checkpointing.make_manager(str(workdir), async_save=False)
    manager.save(7, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()

    result = run_cli(f"--workdir={workdir}", f"--out={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / export.MANIFEST_FILE).read_text())
    assert manifest["step"] == 7
    for name in os.listdir(tmp_path / "out"):  # readable by colleagues (umask 022: conftest)
        assert stat.S_IMODE(os.stat(tmp_path / "out" / name).st_mode) == 0o644, name
    tensors = load_file(str(tmp_path / "out" / export.VIDEO_FILE))
    kernel = np.asarray(state.params["video_backbone"]["stem"]["spatial"]["kernel"][...])
    np.testing.assert_array_equal(tensors["stem.0.weight"], kernel.transpose(4, 3, 0, 1, 2))
