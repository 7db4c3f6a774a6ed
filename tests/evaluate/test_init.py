"""Where the evaluated model comes from (evaluate.init): official GDT/STiCA checkpoints against
the torchvision modules they were built from, torchvision files, workdirs, and the one-line
errors."""

import argparse
import collections
import os
import pathlib
import re

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs.eval import audio_esc50, finetune_hmdb51
from stica_jax.errors import ConfigError
from stica_jax.evaluate import init as init_lib
from stica_jax.models.temporal_pooling import TransformerPool
from tests.command_line import ROOT, newcomer_dirs, run_fresh, stderr_lines
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


def official_pooling_state(num_layers: int = 2) -> dict[str, "torch.Tensor"]:
    """`video_pooling.2.transformer.*` of main_stica.py's default model (facebookresearch/GDT
    model.py `Stica_TransformerFMCrop`, src/transformer.py): `num_layer` `Transformer` layers,
    each q/k-only attention (`qkv_mha=False`: no value or output projection), LayerNorms and a
    2048-wide FFN; no positional embedding (`positional_emb=False`)."""
    layers = torch.nn.ModuleList()
    for _ in range(num_layers):
        layer = torch.nn.Module()
        layer.mha = torch.nn.Module()
        layer.mha.q_lin = torch.nn.Linear(512, 512)
        layer.mha.k_lin = torch.nn.Linear(512, 512)
        layer.norm1 = torch.nn.LayerNorm(512, eps=1e-12)
        layer.ffn = torch.nn.Module()
        layer.ffn.lin1 = torch.nn.Linear(512, 2048)
        layer.ffn.lin2 = torch.nn.Linear(2048, 512)
        layer.norm2 = torch.nn.LayerNorm(512, eps=1e-12)
        layers.append(layer)
    return {f"video_pooling.2.transformer.{k}": v for k, v in layers.state_dict().items()}


def official_head_state(name: str) -> dict[str, "torch.Tensor"]:
    """model.py's `MLP(512, 256)` head (`use_mlp=True`, the official scripts' setting) under
    `name`: `block_forward` = Flatten, Dropout, Linear(512, 512, bias=False), Unsqueeze,
    BatchNorm1d(512), Flatten, ReLU, Dropout, Linear(512, 256)."""
    nn = torch.nn
    block = nn.Sequential(
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(512, 512, bias=False),
        nn.Identity(),
        nn.BatchNorm1d(512),
        nn.Flatten(),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(512, 256),
    )
    return {f"{name}.block_forward.{k}": v for k, v in block.state_dict().items()}


def training_args(**extra) -> argparse.Namespace:
    """Some of main_gdt.py's argparse fields, as `utils.save_checkpoint` stores them."""
    return argparse.Namespace(
        model="av_gdt",
        vid_base_arch="r2plus1d_18",
        aud_base_arch="resnet9",
        use_mlp=True,
        lr=0.01,
        epochs=200,
        lr_milestones="150,175",
        aug_audio=[1, 1, 2, 5],
        output_dir="/checkpoint/gdt",
        **extra,
    )


# The official layouts: main_stica.py's {"epoch", "state_dict", "optimizer"} (DDP keys), and
# main_gdt.py's utils.save_checkpoint {"model", "optimizer", "lr_scheduler", "epoch", "args"}
# (model.module.state_dict(): no "module."), each with and without an argparse `args`.
LAYOUTS = ("stica", "stica+args", "gdt", "gdt+args")


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    """{layout: path} of checkpoints saved with torch.save as the official scripts save them, the
    torchvision towers they hold, and the STiCA state dict (without `module.`)."""
    video, audio = gdt_towers()
    gdt = {f"video_network.base.{k}": v for k, v in video.state_dict().items()}
    gdt.update({f"audio_network.base.{k}": v for k, v in audio.state_dict().items()})
    gdt.update(official_head_state("mlp_v"))
    gdt.update(official_head_state("mlp_a"))
    stica = {**gdt, **official_pooling_state()}
    optimizer = {"state": {}, "param_groups": [{"lr": 0.64, "momentum": 0.9, "params": [0, 1]}]}
    directory = tmp_path_factory.mktemp("official")
    files = {}
    for layout in LAYOUTS:
        if layout.startswith("stica"):
            checkpoint = {
                "epoch": 101,
                "state_dict": {f"module.{k}": v for k, v in stica.items()},
                "optimizer": optimizer,
            }
        else:
            checkpoint = {
                "model": gdt,
                "optimizer": optimizer,
                "lr_scheduler": {"last_epoch": 100, "base_lrs": [0.01], "_step_count": 101},
                "epoch": 101,
            }
        if layout.endswith("+args"):
            checkpoint["args"] = training_args()
        path = directory / f"{layout.replace('+', '_')}.pth"
        torch.save(checkpoint, path)
        files[layout] = str(path)
    return files, video, audio, stica


@pytest.fixture(scope="module")
def official_checkpoint(official_files):
    """main_stica.py's checkpoint: (path, video tower, audio tower)."""
    files, video, audio, _ = official_files
    return files["stica"], video, audio


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


# What an official checkpoint holds beside the two backbones, by the structure of model.py: the
# STiCA transformer pooling (2 layers × q/k weights and biases, 2 LayerNorms, 2 FFN linears = 12
# tensors each), each MLP head (Linear weight, BatchNorm1d's 5 tensors, Linear weight and bias),
# the audio ResNet's 1000-way fc.
NOT_IMPORTED = {
    "video_pooling.2.transformer.": 24,
    "mlp_v.": 8,
    "mlp_a.": 8,
    "audio_network.base.fc.": 2,
}


def load_line(out: str) -> str:
    """The one line `load_pretrained` prints for a file."""
    lines = [line for line in out.splitlines() if line.startswith("init.torch ")]
    assert len(lines) == 1, out
    return lines[0]


def groups_named(line: str) -> dict[str, int]:
    """{prefix: tensor count} of the line's "not imported:" part."""
    part = line.split("; not imported: ")[1].split("; ")[0]
    return {group: int(n) for group, n in re.findall(r"([\w.]+)\* \((\d+) tensors?\b", part)}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_official_checkpoint_loads_both_towers_as_the_torchvision_modules_compute(
    official_files, layout, capsys
):
    files, video, audio, stica = official_files
    path = files[layout]
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

    # One line names what was left out: everything but the two backbones (less the audio fc).
    expected = dict(NOT_IMPORTED)
    if layout.startswith("gdt"):  # GDT has no pooling
        del expected["video_pooling.2.transformer."]
    held = len(stica) - (24 if layout.startswith("gdt") else 0)
    assert sum(expected.values()) == held - len(video.state_dict()) - len(audio.state_dict()) + 2
    line = load_line(capsys.readouterr().out)
    assert line.startswith(f"init.torch {path} (an official GDT/STiCA checkpoint): imported ")
    assert groups_named(line) == expected == pretrained.not_imported
    if layout.startswith("stica"):
        assert "q/k-only attention, no positional embedding" in line
    entries = (
        ["epoch", "optimizer"] if layout.startswith("stica") else ["optimizer", "lr_scheduler"]
    )
    entries += ["epoch"] if layout.startswith("gdt") else []
    entries += ["args"] if layout.endswith("+args") else []
    assert f"the checkpoint's {', '.join(entries)}: not weights, not read" in line


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


def test_a_state_dict_of_neither_tower_is_one_line(tmp_path):
    """An image ResNet-50's keys: neither torchvision's r2plus1d_18 nor the official audio
    ResNet-9 (the command's exit status for it: tests/evaluate/test_evaluate_command.py)."""
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "resnet50.pth")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 4)}, path)
    with pytest.raises(init_lib.InitError, match="neither an r2plus1d_18 nor a ResNet-9") as error:
        init_lib.load_pretrained(torch_config(path))
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


def test_features_are_computed_in_the_evaluations_dtype_not_the_pretrainings(tmp_path):
    """A workdir pretrained in bfloat16 (as configs/sota.py) is evaluated in float32, as the
    official evaluation runs: the audio configs and the fine-tuning configs say float32."""
    workdir = tiny_workdir(pathlib.Path(tmp_path) / "pre", dtype="bfloat16")
    spectrogram = np.random.default_rng(0).normal(size=(1, 16, 40, 1)).astype(np.float32)
    maps = {}
    for dtype in ("float32", "bfloat16"):
        config = audio_esc50.get_config()
        assert config.model.dtype == "float32"  # the protocol's own choice
        config.model.dtype = dtype
        config.init.workdir = workdir
        pretrained = init_lib.load_pretrained(config, input_from_source=True)
        assert pretrained.config.model.dtype == dtype
        maps[dtype] = jax.jit(lambda m, x: m.audio_map(x))(pretrained.model, spectrogram)
    assert maps["float32"].dtype == np.float32 and maps["bfloat16"].dtype == jax.numpy.bfloat16
    # The same parameters: the maps agree to bfloat16's precision, and not better.
    f32, bf16 = np.asarray(maps["float32"]), np.asarray(maps["bfloat16"], np.float32)
    relative = np.linalg.norm(f32 - bf16) / np.linalg.norm(f32)
    assert 1e-4 < relative < 5e-2, relative
    assert finetune_hmdb51.get_config().model.dtype == "float32"


class TrainingState(collections.OrderedDict):
    """A state-dict container of a class of the trainer's own: unpickling it would run code of
    the file's choosing (its module), so it is refused like any object torch does not allow."""


@pytest.mark.parametrize(
    "checkpoint,refused",
    [
        (
            lambda state: {"model": state, "args": training_args(data=pathlib.Path("/k400"))},
            "pathlib",
        ),
        (lambda state: {"epoch": 1, "state_dict": TrainingState(state)}, "TrainingState"),
    ],
    ids=["a Path in args", "an OrderedDict subclass"],
)
def test_a_checkpoint_with_any_other_python_object_is_refused_in_one_line(
    tmp_path, checkpoint, refused
):
    path = str(tmp_path / "checkpoint.pth")
    torch.save(checkpoint({"video_network.base.stem.0.weight": torch.zeros(45, 3, 1, 7, 7)}), path)
    with pytest.raises(init_lib.InitError, match="refuses to unpickle") as error:
        init_lib.load_pretrained(torch_config(path))
    message = str(error.value)
    assert "\n" not in message
    assert re.search(rf"Unsupported global: GLOBAL \S*{refused}", message), message
    assert argparse.Namespace not in torch.serialization.get_safe_globals()


def test_transformer_pooling_from_a_file_is_refused_unless_a_fresh_one_is_accepted(
    official_files, tmp_path, capsys
):
    files, _, _, _ = official_files
    torchvision_file = str(tmp_path / "r2plus1d_18.pth")
    torch.save({"stem.0.weight": torch.zeros(45, 3, 1, 7, 7)}, torchvision_file)
    # The refusal comes before any weight is loaded: an official STiCA file holds a transformer
    # that is not ours (spec §3); GDT and torchvision files hold no pooling at all.
    for path, holds in [
        (
            files["stica"],
            "holds the official transformer pooling (video_pooling.2.transformer.*: "
            "q/k-only attention, no positional embedding, token 0 as output), which is not "
            "stica_jax's transformer (spec §3)",
        ),
        (files["gdt+args"], "holds no temporal pooling"),
        (torchvision_file, "holds no temporal pooling"),
    ]:
        config = torch_config(path)
        config.pooling = "transformer"
        with pytest.raises(init_lib.InitError) as error:
            init_lib.load_pretrained(config)
        message = str(error.value)
        assert "\n" not in message
        assert message.startswith(f"init.torch {path} {holds}"), message
        assert message.endswith(
            "would start from a randomly initialised transformer: use --config.pooling=avg (the "
            "official fine-tuning, --num_layer 0), or accept a fresh transformer with "
            "--config.init.fresh_pooling=True"
        )
    assert "init.torch" not in capsys.readouterr().out  # nothing was loaded

    config = torch_config(files["stica"])
    config.pooling = "transformer"
    config.init.fresh_pooling = True
    pretrained = init_lib.load_pretrained(config)
    assert isinstance(pretrained.model.video_pooling, TransformerPool)
    assert pretrained.info["fresh_pooling"] is True  # results.json's `init` entry says so
    line = load_line(capsys.readouterr().out)
    assert groups_named(line) == NOT_IMPORTED
    assert line.endswith(
        "; pooling='transformer' starts from a freshly initialised transformer "
        "(init.fresh_pooling=True)"
    )


@pytest.mark.slow
def test_the_evaluation_command_refuses_transformer_pooling_from_an_official_file(tmp_path):
    home, cwd = newcomer_dirs(tmp_path)
    # The refusal comes before the architecture is checked or a weight read: a tiny network
    # and a file of two official keys are enough.
    path = str(tmp_path / "stica.pth")
    state = {
        "module.video_network.base.stem.0.weight": torch.zeros(45, 3, 1, 7, 7),
        "module.video_pooling.2.transformer.0.mha.q_lin.weight": torch.zeros(512, 512),
    }
    torch.save({"epoch": 1, "state_dict": state, "optimizer": {}}, path)
    result = run_fresh(
        [
            "-m",
            "stica_jax.evaluate",
            f"--config={os.path.join(ROOT, 'tests/tiny_eval_config.py')}",
            f"--config.init.torch={path}",
            "--config.pooling=transformer",
            f"--workdir={tmp_path / 'eval'}",
        ],
        home=str(home),
        cwd=str(cwd),
    )
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = stderr_lines(result)
    assert line.startswith(
        f"stica_jax.evaluate: error: init.torch {path} holds the official transformer pooling"
    )
    assert "(spec §3)" in line and line.endswith("--config.init.fresh_pooling=True")
    assert not list(cwd.iterdir())
