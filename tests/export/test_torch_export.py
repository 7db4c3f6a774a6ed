"""PyTorch interop: full-size models exported to torchvision give the same numbers, and come back.

One full-size STiCA (random weights, non-trivial BatchNorm/LayerNorm statistics and affine
parameters) is built, exported and run once per module in each framework.
"""

import ast
import json
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from safetensors.torch import load_file as torch_load_file, save_file as torch_save_file

from configs import sota
from stica_jax.export import to_torch, torch as export, torch_modules
from stica_jax.models.audio_resnet import AudioResNet
from stica_jax.models.stica import build_model
from tests.export.random_norms import flat_values, randomize_norms

REPO = pathlib.Path(__file__).resolve().parents[2]
TOL = 1e-4  # max abs difference, float32


def max_diff(jax_value, torch_value) -> float:
    return float(np.max(np.abs(np.asarray(jax_value) - torch_value.detach().numpy())))


@pytest.fixture(scope="module")
def config():
    config = sota.get_config()
    config.model.dtype = "float32"
    return config


@pytest.fixture(scope="module")
def model(config):
    model = build_model(config.model, config.crops, rngs=nnx.Rngs(0))
    randomize_norms(model, seed=1)
    model.eval()
    return model


@pytest.fixture(scope="module")
def export_dir(model, config, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    export.export_model(model, config, out, step=123)
    return out


@pytest.fixture(scope="module")
def torch_model(export_dir):
    return torch_modules.load_export(export_dir)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(2)
    video = rng.standard_normal((1, 16, 112, 112, 3)).astype(np.float32)  # [B, T, H, W, C]
    audio = rng.standard_normal((2, 257, 199, 1)).astype(np.float32) - 5.0  # log-mel-like
    return video, audio


@pytest.fixture(scope="module")
def outputs(model, torch_model, inputs):
    """Maps and embeddings of both frameworks, on the same video and spectrograms."""
    video, audio = inputs
    # Jitted: op by op, each of the network's ops would be a compile of its own.
    jax_vmap = nnx.jit(lambda m, x: m.video_map(x))(model, jnp.asarray(video))
    jax_amap = nnx.jit(lambda m, x: m.audio_map(x))(model, jnp.asarray(audio))
    embed_video = nnx.jit(lambda m, x: m.embed_video_map(x, None))
    embed_audio = nnx.jit(lambda m, x: m.embed_audio_map(x, None))
    with torch.no_grad():
        t_vmap = torch_model.video_map(torch.from_numpy(video).permute(0, 4, 1, 2, 3))
        t_amap = torch_model.audio_map(torch.from_numpy(audio).permute(0, 3, 1, 2))
        t_zv = torch_model.embed_video_map(t_vmap)
        t_zv_crop = torch_model.embed_video_map(t_vmap[:, :, :1, 1:5, 2:6])
        t_za = torch_model.audio_head(t_amap.mean(dim=(2, 3)))
    return {
        "video_map": (jnp.transpose(jax_vmap, (0, 4, 1, 2, 3)), t_vmap),  # → NCTHW
        "audio_map": (jnp.transpose(jax_amap, (0, 3, 1, 2)), t_amap),  # → NCFT
        "video_embedding": (embed_video(model, jax_vmap), t_zv),
        "video_crop_embedding": (embed_video(model, jax_vmap[:, :1, 1:5, 2:6]), t_zv_crop),
        "audio_embedding": (embed_audio(model, jax_amap), t_za),
    }


# --- loading into torchvision ---------------------------------------------------------------


def test_video_backbone_loads_strictly_into_torchvision_r2plus1d18(export_dir, model):
    from torchvision.models.video import r2plus1d_18

    net = r2plus1d_18()
    net.fc = torch.nn.Identity()  # STiCA has no classifier: the file has no fc
    net.load_state_dict(torch_load_file(export_dir / export.VIDEO_FILE), strict=True)
    bn = model.video_backbone.layers[3][1].conv2.bn
    np.testing.assert_array_equal(
        net.layer4[1].conv2[0][1].running_var.numpy(), np.asarray(bn.var.get_value())
    )
    assert int(net.stem[1].num_batches_tracked) == 123


def test_audio_backbone_loads_strictly_into_torchvision_resnet(export_dir):
    from torchvision.models.resnet import BasicBlock, ResNet

    net = ResNet(BasicBlock, [1, 1, 1, 1])
    net.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    del net.fc  # no fc in the file
    net.load_state_dict(torch_load_file(export_dir / export.AUDIO_FILE), strict=True)


# --- parity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["video_map", "audio_map", "video_embedding", "video_crop_embedding", "audio_embedding"]
)
def test_pytorch_outputs_match_flax(outputs, name):
    jax_value, torch_value = outputs[name]
    assert tuple(jax_value.shape) == tuple(torch_value.shape)
    diff = max_diff(jax_value, torch_value)
    scale = float(np.max(np.abs(np.asarray(jax_value))))
    print(f"{name}: max |jax - torch| = {diff:.3g} (max |value| {scale:.3g})")
    assert diff < TOL


def test_video_map_has_expected_shape(outputs):
    assert tuple(outputs["video_map"][1].shape) == (1, 512, 2, 7, 7)
    assert tuple(outputs["audio_map"][1].shape) == (2, 512, 9, 7)


# --- round trip -----------------------------------------------------------------------------


def test_round_trip_through_pytorch_reproduces_every_variable(
    model, config, torch_model, export_dir, tmp_path
):
    """JAX → safetensors → PyTorch modules → state_dict → files → JAX is exact."""
    sd = {k: v.clone() for k, v in torch_model.state_dict().items()}
    back = tmp_path / "back"
    back.mkdir()
    (back / export.MANIFEST_FILE).write_text((export_dir / export.MANIFEST_FILE).read_text())
    for file, prefix in (
        (export.VIDEO_FILE, "video_backbone."),
        (export.AUDIO_FILE, "audio_backbone."),
    ):
        torch_save_file(
            {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}, back / file
        )
    torch_save_file(
        {
            k: v
            for k, v in sd.items()
            if k.split(".")[0] in ("video_pooling", "video_head", "audio_head")
        },
        back / export.HEADS_FILE,
    )
    fresh = nnx.eval_shape(lambda: build_model(config.model, config.crops, rngs=nnx.Rngs(7)))
    export.import_model(back, fresh)
    original, restored = flat_values(model), flat_values(fresh)
    assert original.keys() == restored.keys()
    for path in original:
        assert restored[path].dtype == original[path].dtype, path
        np.testing.assert_array_equal(restored[path], original[path], err_msg=str(path))


def test_pth_state_dicts_import_into_the_backbones(model, config, torch_model, tmp_path):
    """`.pth` files (read with weights_only=True) of both backbones give the same variables."""
    torch.save(torch_model.video_backbone.state_dict(), tmp_path / "video.pth")
    torch.save(
        {
            "state_dict": {
                f"module.{k}": v for k, v in torch_model.audio_backbone.state_dict().items()
            }
        },
        tmp_path / "audio.pth",
    )
    fresh = nnx.eval_shape(lambda: build_model(config.model, config.crops, rngs=nnx.Rngs(7)))
    export.load_torchvision_r2plus1d18(tmp_path / "video.pth", fresh)
    audio = export.load_torchvision_audio_resnet9(tmp_path / "audio.pth")
    assert isinstance(audio, AudioResNet)
    for part, loaded in (("video_backbone", fresh.video_backbone), ("audio_backbone", audio)):
        want, got = flat_values(getattr(model, part)), flat_values(loaded)
        assert want.keys() == got.keys()
        for path in want:
            np.testing.assert_array_equal(got[path], want[path], err_msg=f"{part} {path}")


# --- manifest and package -------------------------------------------------------------------


def test_manifest_describes_files_and_inputs(export_dir, config):
    manifest = json.loads((export_dir / export.MANIFEST_FILE).read_text())
    assert manifest["step"] == 123 and manifest["format"] == export.FORMAT
    assert manifest["config"]["model"]["video_widths"] == [64, 128, 256, 512]
    pooling = manifest["architecture"]["video_pooling"]
    assert {
        k: pooling[k] for k in ("kind", "width", "num_layers", "num_heads", "mlp_width", "max_len")
    } == {
        "kind": "transformer",
        "width": 512,
        "num_layers": 2,
        "num_heads": 4,
        "mlp_width": 2048,
        "max_len": 64,
    }
    assert manifest["architecture"]["video_head"] == {
        "in_features": 512,
        "hidden": 512,
        "out_features": 256,
        "dropout": 0.3,
        "output": "L2-normalised",
    }
    for name, tensors in manifest["files"].items():
        on_disk = torch_load_file(export_dir / name)
        assert {k: list(v.shape) for k, v in on_disk.items()} == {
            k: t["shape"] for k, t in tensors.items()
        }
    video, audio = manifest["inputs"]["video"], manifest["inputs"]["audio"]
    assert video["torch_layout"] == "NCTHW" and video["num_frames"] == config.input.num_frames
    assert audio["num_mel_bins"] == 257 and audio["hop_length"] == 240
    # The conventions are the data pipeline's own (read without importing TensorFlow).
    constants = {}
    for file, names in (("augment.py", ("VIDEO_MEAN", "VIDEO_STD")),):
        tree = ast.parse((REPO / "data_pipeline" / file).read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and node.targets[0].id in names:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
    assert video["mean"] == [constants["VIDEO_MEAN"]] * 3
    assert video["std"] == [constants["VIDEO_STD"]] * 3
    features = ast.parse((REPO / "data_pipeline" / "audio_features.py").read_text())

    def defaults(name):
        fn = next(n for n in features.body if getattr(n, "name", "") == name)
        return {
            a.arg: ast.literal_eval(d)
            for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults)
            if d is not None
        }

    # sota.py reads the official loader's features, so its audio net expects those.
    assert config.input.audio_frontend == audio["frontend"] == "official"
    assert audio["preemphasis"] == defaults("official_log_filterbank")["preemphasis"]
    stica = config.copy_and_resolve_references()
    stica.input.audio_frontend = "stica"
    stica_audio = to_torch._input_conventions(stica)["audio"]
    assert stica_audio["frontend"] == "stica" and "preemphasis" not in stica_audio
    assert stica_audio["log_offset"] == defaults("log_mel_spectrogram")["log_offset"]


def test_manifest_audio_recipe_gives_the_pipelines_official_features(export_dir, config):
    """python_speech_features.logfbank called as the manifest says equals what the network saw."""
    python_speech_features = pytest.importorskip("python_speech_features")
    from data_pipeline import stages
    from data_pipeline.input_config import InputConfig

    audio = json.loads((export_dir / "manifest.json").read_text())["inputs"]["audio"]
    rate = audio["sample_rate"]
    samples = np.random.default_rng(0).integers(-3000, 3000, rate).astype(np.int16)
    waveform = samples.astype(np.float32) / 32768.0  # how the pipeline decodes int16 audio
    input_config = InputConfig.from_any(config.input)
    ours = stages.spectrogram(waveform, input_config).numpy()[..., 0]
    reference = python_speech_features.logfbank(
        waveform.astype(np.float64) * audio["sample_scale"],
        rate,
        winlen=audio["window_length"] / rate,
        winstep=audio["hop_length"] / rate,
        nfilt=audio["num_mel_bins"],
        nfft=audio["fft_length"],
        preemph=audio["preemphasis"],
    ).T
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_package_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
        "import stica_jax.export, stica_jax.export.torch; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
