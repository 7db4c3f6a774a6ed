"""Bad weight files and architectures give clear errors that name what is wrong."""

import argparse
import os
import pathlib
import pickle

import jax
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from safetensors.numpy import save_file  # noqa: E402
from safetensors.torch import save_file as torch_save_file  # noqa: E402

from stica_jax.export import torch as export  # noqa: E402
from stica_jax.export.weight_files import read_checkpoint  # noqa: E402
from stica_jax.models.audio_resnet import AudioResNet  # noqa: E402
from stica_jax.models.stica import build_model  # noqa: E402
from stica_jax.models.video_resnet import VideoResNet  # noqa: E402
from tests.tiny import tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def r2plus1d_state():
    return torchvision.models.video.r2plus1d_18().state_dict()


@pytest.fixture
def small_safetensors(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"stem.0.weight": np.ones((45, 3, 1, 7, 7), np.float32)}, path)
    return path


def test_truncated_safetensors_file(small_safetensors):
    data = small_safetensors.read_bytes()
    small_safetensors.write_bytes(data[: len(data) // 2])
    with pytest.raises(export.WeightFileError, match="not a readable safetensors file"):
        export.load_torchvision_r2plus1d18(small_safetensors)


def test_corrupted_safetensors_header(small_safetensors):
    data = bytearray(small_safetensors.read_bytes())
    data[9:30] = b"\x00garbage\xff" * 2 + b"\x01\x02\x03"
    small_safetensors.write_bytes(bytes(data))
    with pytest.raises(export.WeightFileError, match="corrupt or truncated"):
        export.load_torchvision_r2plus1d18(small_safetensors)


def test_truncated_pth_file(r2plus1d_state, tmp_path):
    path = tmp_path / "r2plus1d_18.pth"
    torch.save(r2plus1d_state, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(export.WeightFileError, match="torch.load\\(weights_only=True\\)"):
        export.load_torchvision_r2plus1d18(path)


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a pickle of the module object, not a state dict
    with pytest.raises(export.WeightFileError, match="refuses to\\s+unpickle"):
        export.load_torchvision_r2plus1d18(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as f:
        pickle.dump({"stem.0.weight": np.zeros((45, 3, 1, 7, 7), np.float32)}, f)
    with pytest.raises(export.WeightFileError, match="refuses to\\s+unpickle"):
        export.load_torchvision_r2plus1d18(path)


class TrainingArgs(argparse.Namespace):
    """A Namespace subclass of a trainer's own: not the class the loader allows."""


def gdt_checkpoint(state, **changes):
    """A checkpoint as facebookresearch/GDT's `utils.save_checkpoint` writes it: the model's
    state dict without `module.`, the optimizer's and LR scheduler's state, the epoch, and the
    training script's argparse Namespace."""
    args = argparse.Namespace(model="av_gdt", lr=0.01, use_mlp=True, aug_audio=[1, 1, 2, 5])
    checkpoint = {
        "model": {f"video_network.base.{k}": v for k, v in state.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0]}]},
        "lr_scheduler": {"last_epoch": 100, "base_lrs": [0.01]},
        "epoch": 101,
        "args": args,
    }
    checkpoint.update(changes)
    return checkpoint


def test_a_gdt_checkpoint_with_its_argparse_args_loads_with_weights_only(r2plus1d_state, tmp_path):
    path = tmp_path / "gdt.pth"
    torch.save(gdt_checkpoint(r2plus1d_state), path)
    checkpoint = read_checkpoint(path)
    assert checkpoint.other_entries == ("optimizer", "lr_scheduler", "epoch", "args")
    model = export.load_torchvision_r2plus1d18(path, prefix="video_network.base.")
    want = r2plus1d_state["stem.0.weight"].numpy().transpose(2, 3, 4, 1, 0)  # → [T, H, W, I, O]
    np.testing.assert_array_equal(np.asarray(model.video_backbone.stem.spatial.kernel), want)
    # The Namespace was allowed for those loads only, not in torch's process-wide list...
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
    # ... and a caller's own allowance of it survives a load.
    with torch.serialization.safe_globals([argparse.Namespace]):
        read_checkpoint(path)
        assert argparse.Namespace in torch.serialization.get_safe_globals()


@pytest.mark.parametrize(
    "changes,refused",
    [
        (lambda: {"args": argparse.Namespace(root=pathlib.Path("/data"))}, "pathlib"),
        (lambda: {"args": TrainingArgs(lr=0.01)}, "TrainingArgs"),
        # GDT's GradualWarmupScheduler.state_dict() keeps its after_scheduler object.
        (
            lambda: {
                "lr_scheduler": {
                    "after_scheduler": torch.optim.lr_scheduler.MultiStepLR(
                        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), [150]
                    )
                }
            },
            "torch.optim.lr_scheduler.MultiStepLR",
        ),
    ],
    ids=["a Path in args", "a Namespace subclass", "a scheduler object"],
)
def test_any_other_object_beside_a_namespace_is_refused(tmp_path, changes, refused):
    path = tmp_path / "gdt.pth"
    state = {"stem.0.weight": torch.zeros(45, 3, 1, 7, 7)}
    torch.save(gdt_checkpoint(state, **changes()), path)
    with pytest.raises(
        export.WeightFileError,
        match=rf"UnpicklingError: Unsupported global: GLOBAL \S*{refused}"
        r"(?s:.*)refuses to\s+unpickle",
    ):
        export.load_torchvision_r2plus1d18(path, prefix="video_network.base.")
    assert argparse.Namespace not in torch.serialization.get_safe_globals()


def test_other_architecture_is_reported_by_name(tmp_path):
    path = tmp_path / "r3d_18.safetensors"
    torch_save_file(torchvision.models.video.r3d_18().state_dict(), path)
    with pytest.raises(export.StateDictMismatchError) as error:
        export.load_torchvision_r2plus1d18(path)
    message = str(error.value)
    assert "missing keys" in message and "stem.3.weight" in message
    assert "unexpected keys" in message and "layer1.0.conv1.0.weight" in message
    assert "stem.0.weight [64, 3, 3, 7, 7] (expected [45, 3, 1, 7, 7])" in message


def test_image_resnet_into_audio_loader_is_reported_by_name(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(export.StateDictMismatchError) as error:
        export.load_torchvision_audio_resnet9(path)
    message = str(error.value)
    assert "conv1.weight [64, 3, 7, 7] (expected [64, 1, 7, 7])" in message
    assert "layer1.1.conv1.weight" in message  # ResNet-18 has 2 blocks per stage


def test_missing_and_unknown_keys_are_named(r2plus1d_state, tmp_path):
    state = dict(r2plus1d_state)
    del state["layer2.0.downsample.1.running_var"]
    state["layer5.0.conv1.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    model = nnx.eval_shape(lambda: VideoResNet(rngs=nnx.Rngs(0)))
    with pytest.raises(
        export.StateDictMismatchError,
        match=r"(?s)missing keys \(1\): layer2.0.downsample.1.running_var.*"
        r"unexpected keys \(1\): layer5.0.conv1.weight",
    ):
        export.load_torchvision_r2plus1d18(path, model)
    # Nothing was assigned: the abstract model still holds shapes only.
    assert isinstance(model.stem.spatial.kernel.get_value(), jax.ShapeDtypeStruct)


def test_slim_model_is_refused(tmp_path):
    config = tiny_config()
    model = nnx.eval_shape(lambda: build_model(config.model, config.crops, rngs=nnx.Rngs(0)))
    with pytest.raises(
        export.UnsupportedArchitectureError,
        match=r"video backbone \(widths \(8, 8, 16, 16\), depths \(1, 1, 1, 1\)\) "
        "has no torchvision counterpart",
    ):
        export.export_model(model, config, tmp_path)
    assert not list(tmp_path.iterdir())
    slim_audio = nnx.eval_shape(lambda: AudioResNet((8, 8, 16, 16), rngs=nnx.Rngs(0)))
    with pytest.raises(export.UnsupportedArchitectureError, match="audio backbone"):
        export.load_torchvision_audio_resnet9(tmp_path / "never_read.safetensors", slim_audio)


def test_missing_prefix_is_explained(r2plus1d_state, tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {f"video_network.{k}": v for k, v in r2plus1d_state.items()}}, path)
    with pytest.raises(export.StateDictMismatchError, match="need a `prefix`"):
        export.load_torchvision_r2plus1d18(path)
    model = export.load_torchvision_r2plus1d18(path, prefix="video_network.")
    assert isinstance(model, export.VideoClassifier)


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool])
def test_a_tensor_that_is_not_floating_point_is_refused(r2plus1d_state, tmp_path, dtype):
    state = dict(r2plus1d_state)
    state["stem.0.weight"] = torch.ones_like(state["stem.0.weight"], dtype=dtype)
    path = tmp_path / "ints.safetensors"
    torch_save_file(state, path)
    model = nnx.eval_shape(lambda: VideoResNet(rngs=nnx.Rngs(0)))
    with pytest.raises(
        export.StateDictMismatchError,
        match=rf"not floating point \(1\): stem.0.weight {str(dtype).split('.')[1]}",
    ):
        export.load_torchvision_r2plus1d18(path, model)
    assert isinstance(model.stem.spatial.kernel.get_value(), jax.ShapeDtypeStruct)


def test_non_finite_weights_are_refused_unless_allowed(r2plus1d_state, tmp_path):
    state = dict(r2plus1d_state)
    weight = state["layer3.0.conv1.0.0.weight"].clone()
    weight.view(-1)[:5] = float("nan")
    weight.view(-1)[5:7] = float("inf")
    state["layer3.0.conv1.0.0.weight"] = weight
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    with pytest.raises(
        export.WeightFileError,
        match=rf"non-finite values \(NaN or inf\):\n  tensors \(1\): layer3.0.conv1.0.0.weight "
        rf"\(7 of {weight.numel()}\)",
    ):
        export.load_torchvision_r2plus1d18(path)
    model = export.load_torchvision_r2plus1d18(path, allow_nonfinite=True)
    values = np.concatenate(
        [np.asarray(x).ravel() for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
    )
    assert np.count_nonzero(~np.isfinite(values)) == 7


def test_the_torch_requirement_is_a_version_whose_weights_only_load_is_a_barrier():
    # torch.load(weights_only=True) executes code from a crafted file before torch 2.6
    # (CVE-2025-32434); every loader here relies on it being a barrier.
    import configparser

    from packaging.requirements import Requirement
    from packaging.version import Version

    setup = configparser.ConfigParser()
    setup.read(os.path.join(os.path.dirname(__file__), "..", "..", "setup.cfg"))
    requirements = [
        Requirement(line)
        for section in ("options.extras_require",)
        for value in setup[section].values()
        for line in value.splitlines()
        if line.strip()
    ]
    torch_requirements = [r for r in requirements if r.name == "torch"]
    assert torch_requirements
    for requirement in torch_requirements:
        assert not requirement.specifier.contains(Version("2.5.1")), requirement
        assert requirement.specifier.contains(Version("2.6.0")), requirement
