"""Where the evaluated model comes from (evaluate.init): official GDT/STiCA checkpoints against
the torchvision modules they were built from, torchvision files, workdirs, and the one-line
errors."""

import pathlib

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs.eval import audio_esc50, finetune_hmdb51
from stica_jax.errors import ConfigError
from stica_jax.evaluate import init as init_lib
from tests.evaluate.test_heatmap import tiny_workdir
from tests.tiny import tiny_config

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def _randomise_batch_norms(module, generator) -> None:
    """BN affine parameters and running statistics away from their init (a trained network's)."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0, 0.1, generator=generator)
                m.running_mean.normal_(0, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)


def gdt_towers():
    """The official towers from torchvision modules: facebookresearch/GDT model.py builds
    `video_network.base` as an r2plus1d_18 whose fc is Identity, and `audio_network.base` as
    `ResNet(BasicBlock, [1, 1, 1, 1])` with a 1-channel conv1 (its 1000-way fc kept)."""
    from torchvision.models.resnet import BasicBlock, ResNet

    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    video = torchvision.models.video.r2plus1d_18()
    video.fc = torch.nn.Identity()
    audio = ResNet(BasicBlock, [1, 1, 1, 1])
    audio.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    for tower in (video, audio):
        _randomise_batch_norms(tower, generator)
        tower.eval()
    return video, audio


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    """A checkpoint as the official main_stica.py saves it: {"epoch", "state_dict" (DDP keys),
    "optimizer"}, with the heads' keys beside the backbones'."""
    video, audio = gdt_towers()
    state = {f"module.video_network.base.{k}": v for k, v in video.state_dict().items()}
    state.update({f"module.audio_network.base.{k}": v for k, v in audio.state_dict().items()})
    state["module.mlp_v.block_forward.2.weight"] = torch.zeros(512, 512)
    path = tmp_path_factory.mktemp("gdt") / "checkpoint.pth"
    torch.save({"epoch": 101, "state_dict": state, "optimizer": {"state": {}}}, path)
    return str(path), video, audio


def torch_config(path: str, prefix: str = "", base=finetune_hmdb51) -> ml_collections.ConfigDict:
    config = base.get_config()
    config.model.dtype = "float32"
    config.init.torch, config.init.prefix = path, prefix
    return config


def video_map_torch(video, x):
    with torch.no_grad():
        for layer in (video.stem, video.layer1, video.layer2, video.layer3, video.layer4):
            x = layer(x)
    return x


def audio_map_torch(audio, x):
    with torch.no_grad():
        x = audio.maxpool(audio.relu(audio.bn1(audio.conv1(x))))
        for layer in (audio.layer1, audio.layer2, audio.layer3, audio.layer4):
            x = layer(x)
    return x


# Jitted: op by op, each of the network's small ops would be a compile of its own.
_video_map = nnx.jit(lambda model, x: model.video_map(x))
_audio_map = nnx.jit(lambda model, x: model.audio_map(x))


def test_an_official_checkpoint_loads_both_towers_as_the_torchvision_modules_compute(
    official_checkpoint,
):
    path, video, audio = official_checkpoint
    pretrained = init_lib.load_pretrained(torch_config(path))
    assert pretrained.source_format == "official"
    assert pretrained.towers == {"video", "audio"}
    assert pretrained.info == {"kind": "torch", "source": path, "step": None}
    # Its audio tower was trained on the official log-mel features (spec §7).
    assert pretrained.config.input.audio_frontend == "official"
    rng = np.random.default_rng(0)
    clip = rng.standard_normal((1, 3, 8, 32, 32)).astype(np.float32)  # torch [B, C, T, H, W]
    want = video_map_torch(video, torch.from_numpy(clip)).numpy().transpose(0, 2, 3, 4, 1)
    got = np.asarray(_video_map(pretrained.model, clip.transpose(0, 2, 3, 4, 1)))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    spec = rng.standard_normal((1, 1, 40, 30)).astype(np.float32)  # torch [B, 1, F, T]
    want = audio_map_torch(audio, torch.from_numpy(spec)).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(_audio_map(pretrained.model, spec.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_a_prefix_selects_one_tower_of_an_official_checkpoint(official_checkpoint):
    path, video, _ = official_checkpoint
    pretrained = init_lib.load_pretrained(torch_config(path, prefix="module.video_network.base."))
    assert pretrained.towers == {"video"}
    with pytest.raises(init_lib.InitError, match="holds no audio weights") as error:
        pretrained.require("audio", "audio")
    assert "\n" not in str(error.value)


def test_a_torchvision_r2plus1d_file_gives_the_video_tower_only(tmp_path):
    video, _ = gdt_towers()
    path = str(tmp_path / "r2plus1d_18.pth")
    torch.save(video.state_dict(), path)
    pretrained = init_lib.load_pretrained(torch_config(path))
    assert (pretrained.source_format, pretrained.towers) == ("torchvision", {"video"})
    assert "audio_frontend" not in pretrained.config.input  # the config's own front end
    clip = np.random.default_rng(1).standard_normal((1, 3, 8, 32, 32)).astype(np.float32)
    want = video_map_torch(video, torch.from_numpy(clip)).numpy().transpose(0, 2, 3, 4, 1)
    got = np.asarray(_video_map(pretrained.model, clip.transpose(0, 2, 3, 4, 1)))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    with pytest.raises(init_lib.InitError, match="audio protocol evaluates the audio tower"):
        pretrained.require("audio", "audio")


def test_weights_of_another_architecture_are_one_line(official_checkpoint):
    path, _, _ = official_checkpoint
    config = torch_config(path)
    config.model = tiny_config().model  # a slim net cannot take torchvision-size weights
    with pytest.raises(init_lib.InitError, match="cannot load into config.model") as error:
        init_lib.load_pretrained(config)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "init,message",
    [
        (dict(), "give exactly one model to evaluate.*none was given"),
        (dict(random=True, workdir="/w"), "got workdir and random"),
        (dict(torch="/nowhere/model.pth"), "no such file or directory: /nowhere/model.pth"),
        (dict(workdir="/nowhere"), "init.workdir /nowhere is not a directory"),
    ],
)
def test_no_source_two_sources_and_missing_ones_are_one_line(init, message):
    config = finetune_hmdb51.get_config()
    config.init.update(init)
    with pytest.raises(ConfigError, match=message) as error:
        init_lib.load_pretrained(config)
    assert "\n" not in str(error.value)


def test_a_workdir_without_checkpoints_is_one_line(tmp_path):
    config = finetune_hmdb51.get_config()
    config.init.workdir = str(tmp_path)
    with pytest.raises(init_lib.InitError, match="config.json not found") as error:
        init_lib.load_pretrained(config)
    assert "\n" not in str(error.value)


def test_a_workdir_brings_its_architecture_and_for_audio_its_front_end(tmp_path):
    workdir = tiny_workdir(pathlib.Path(tmp_path) / "pre")
    config = audio_esc50.get_config()
    config.init.workdir = workdir
    video_protocol = init_lib.load_pretrained(config)
    assert video_protocol.info == {"kind": "workdir", "source": workdir, "step": 3}
    assert video_protocol.config.model.video_widths == tiny_config().model.video_widths
    assert video_protocol.config.input.num_mel_bins == config.input.num_mel_bins  # its own input
    audio_protocol = init_lib.load_pretrained(config, input_from_source=True)
    assert audio_protocol.config.input.num_mel_bins == tiny_config().input.num_mel_bins
    assert audio_protocol.towers == {"video", "audio"}
    restored = jax.tree.leaves(nnx.state(audio_protocol.model))
    assert restored and all(np.all(np.isfinite(x)) for x in restored)
