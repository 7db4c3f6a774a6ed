"""Where an evaluated model comes from: a pretraining workdir, a PyTorch file, or random init.

Every protocol (fine-tuning, linear probe, audio classification) and the heatmaps start from
`load_pretrained(config)`, which reads `config.init`:

    config.init.workdir = "/ckpt/run1"   # a stica_jax workdir (config.json + orbax checkpoints)
    config.init.step = -1                # its checkpoint: -1 = the latest
    config.init.torch = "FILE_OR_DIR"    # a PyTorch state dict, or an export of ours
    config.init.prefix = ""              # keep only the file's keys under this prefix
    config.init.random = True            # the random-init baseline (config.model, config.seed)
    config.init.fresh_pooling = False    # with a file: accept a fresh transformer pooling

Exactly one of `workdir`, `torch` and `random` must be given. (The module is longer than the
project's ~450 lines because it keeps every accepted source, its checks and its one-line errors
in one place: a reader tracing where a model came from reads one file.)

What `init.torch` may hold, told apart by its keys:
- **an export of ours** (`python -m stica_jax.export`): its directory, with
  `manifest.json`. The architecture comes from the manifest's config, like a workdir's.
- **an official GDT / STiCA checkpoint** (facebookresearch/GDT, e.g. `gdt_K400.pth`): the
  state dict of the whole pretraining model, as `main_stica.py` saves it (`{"epoch",
  "state_dict", "optimizer"}`, DDP's `module.` on every key) or as `main_gdt.py` does through
  `utils.save_checkpoint` (`{"model", "optimizer", "lr_scheduler", "epoch", "args"}`, no
  `module.`, `args` an `argparse.Namespace`: the one Python class `weight_files` unpickles
  beyond tensors and plain containers); keys `video_network.base.*` and `audio_network.base.*`.
  In the official `model.py`, `video_network.base` is `src/vmz.py`'s `r2plus1d_18`:
  torchvision's key layout, its `fc` replaced by `Identity` (no `fc` keys). `audio_network.base`
  is `src/resnet.py`'s `resnet9`, torchvision's `ResNet(BasicBlock, [1, 1, 1, 1])` with a
  1-channel `conv1`, whose unused 1000-way `fc` is still in the state dict (dropped here).
  Both towers are loaded. The audio tower was trained on the official log-mel features (spec
  §7), so `input.audio_frontend` becomes "official". Not imported: the projection heads
  `mlp_v.*` / `mlp_a.*` (the protocols use none), and a STiCA checkpoint's
  `video_pooling.2.transformer.*`, the official transformer pooling, which is not ours
  (q/k-only attention, no positional embedding, token 0 as output: spec §3) and has no place
  in our model.
- **a torchvision `r2plus1d_18` state dict** (torchvision's Kinetics-400 `.pth`, or an
  export's `r2plus1d_18.safetensors`): the video tower only; its `fc` is dropped.
- **a torchvision ResNet-9 audio state dict** (an export's `resnet9_audio.safetensors`): the
  audio tower only.
With a file, the architecture is `config.model` (it must be the full-size torchvision one) and
the towers the file lacks keep their random init; a protocol that needs a tower the file did
not provide stops with a one-line error. Loading a file prints one line that names what it
imported and, grouped by key prefix with tensor counts, what it did not. A state-dict file
never holds a temporal pooling of ours, so a video protocol with `pooling="transformer"` would
start from a randomly initialised transformer: that is refused unless `init.fresh_pooling=True`
accepts it (and the line says so). A workdir or an export of ours brings its own pretrained
pooling.
"""

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import ml_collections
from flax import nnx

from data_pipeline.errors import first_line, one_line
from stica_jax import restore
from stica_jax.errors import ConfigError
from stica_jax.export import from_torch, torch_names, weight_files
from stica_jax.models import build_model

# The key prefixes of an official GDT / STiCA checkpoint (after DDP's `module.`, which
# `weight_files.read_state_dict` drops): facebookresearch/GDT model.py.
OFFICIAL_VIDEO_PREFIX = "video_network.base."
OFFICIAL_AUDIO_PREFIX = "audio_network.base."
OFFICIAL_AUDIO_FRONTEND = "official"  # spec §7: the official log-mel features
# `Stica_TransformerFMCrop.video_pooling` is Sequential(AdaptiveAvgPool3d, TransposeSqueeze,
# TransformerPooling): the transformer's layers are `video_pooling.2.transformer.<i>.*`.
OFFICIAL_POOLING_PREFIX = "video_pooling.2.transformer."
# What else an official checkpoint holds (model.py), for the load line: prefix (or whole key)
# → what it is. A key of none of these is grouped by its first name.
OFFICIAL_EXTRAS = {
    "video_pooling.2.pos_embs.": "the official pooling's positional embedding",
    "video_pooling.2.pos_ids": "the official pooling's position ids",
    "mlp_v.": "the official video projection head",
    "mlp_a.": "the official audio projection head",
    OFFICIAL_VIDEO_PREFIX: "the video backbone, outside init.prefix",
    OFFICIAL_AUDIO_PREFIX: "the audio backbone, outside init.prefix",
}


class InitError(ConfigError):
    """The model to evaluate cannot be loaded: a missing workdir or file, or weights of another
    architecture. One line that names the source."""


@dataclasses.dataclass
class Pretrained:
    """A model to evaluate and where it came from.

    Attributes:
      model: a `STiCA` (or the `VideoClassifier` of a supervised workdir), in eval mode, built
        without a mesh axis.
      config: the evaluation config with `model` (and `input`, when asked) taken from the source.
      info: the `init` entry of results.json: {"kind", "source", "step"}.
      towers: the towers whose weights came from the source ("video", "audio"); random init:
        empty.
      source_format: "workdir", "export", "official", "torchvision" or "random".
      not_imported: for a PyTorch file, what it holds that was not imported: {key prefix ending
        in "." (or a whole key): tensor count}; empty for every other source.
    """

    model: nnx.Module
    config: ml_collections.ConfigDict
    info: dict[str, Any]
    towers: frozenset[str]
    source_format: str
    not_imported: dict[str, int] = dataclasses.field(default_factory=dict)

    def require(self, tower: str, protocol: str) -> None:
        """`InitError` unless `tower` came from the source (random init passes)."""
        if self.source_format != "random" and tower not in self.towers:
            raise InitError(
                f"the {protocol} protocol evaluates the {tower} tower, but {self.info['source']} "
                f"holds no {tower} weights (it has: {', '.join(sorted(self.towers)) or 'none'})"
            )


def init_kind(init: Any) -> str:
    """ "workdir", "torch" or "random": the one source `init` names, or a one-line `ConfigError`."""
    given = [
        name
        for name, value in (
            ("workdir", init.get("workdir", "")),
            ("torch", init.get("torch", "")),
            ("random", init.get("random", False)),
        )
        if value
    ]
    if len(given) != 1:
        problem = "none was given" if not given else f"got {' and '.join(given)}"
        raise ConfigError(
            "give exactly one model to evaluate: --config.init.workdir=PRETRAIN_DIR, "
            f"--config.init.torch=FILE or --config.init.random=True ({problem})"
        )
    return given[0]


def _step(init: Any) -> int | None:
    step = init.get("step", -1)
    return None if step is None or step < 0 else int(step)


def _replace(config: ml_collections.ConfigDict, name: str, value: Any) -> None:
    """`config[name] = value` (a ConfigDict section), even on a locked config."""
    value = value if isinstance(value, ml_collections.ConfigDict) else _config(value)
    with config.unlocked():
        config[name] = value


def _take_architecture(config: ml_collections.ConfigDict, source_model: Any) -> None:
    """`config.model` ← the source's (a workdir's or an export's), keeping the evaluation's
    compute dtype: the parameters are float32 whatever the source computed in."""
    dtype = config.model.get("dtype")
    _replace(config, "model", source_model)
    if dtype:
        config.model.dtype = dtype


def _config(tree: dict[str, Any]) -> ml_collections.ConfigDict:
    def tuples(t):
        if isinstance(t, dict):
            return {k: tuples(v) for k, v in t.items()}
        return tuple(tuples(v) for v in t) if isinstance(t, list) else t

    return ml_collections.ConfigDict(tuples(tree))


def _set_audio_frontend(config: ml_collections.ConfigDict, frontend: str) -> None:
    with config.input.unlocked():
        config.input.audio_frontend = frontend


def build_eval_model(config: ml_collections.ConfigDict) -> nnx.Module:
    """The STiCA of `config.model`, randomly initialised from `config.seed`, without crops
    (evaluation never crops), in eval mode."""
    model = build_model(config.model, None, rngs=nnx.Rngs(config.get("seed", 0)))
    model.eval()
    return model


def restore_workdir(workdir: str, step: int | None = None, compute_dtype: str | None = None):
    """`restore.restore_model(workdir, step, compute_dtype=)` with one-line errors: (config,
    model, step)."""
    if not os.path.isdir(workdir):
        raise InitError(f"init.workdir {workdir} is not a directory")
    try:
        return restore.restore_model(workdir, step, compute_dtype=compute_dtype)
    except FileNotFoundError as error:
        raise InitError(f"init.workdir: {error}") from None
    except (KeyError, ValueError) as error:
        # Orbax raises these for a step that is not there or a tree that does not match.
        first = first_line(error) or type(error).__name__
        raise InitError(f"init.workdir {workdir}: cannot restore step {step}: {first}") from None


def load_pretrained(
    config: ml_collections.ConfigDict, *, input_from_source: bool = False
) -> Pretrained:
    """The model `config.init` names, and `config` with the source's architecture.

    The compute dtype stays the evaluation config's `model.dtype` whatever the source was
    trained with (its parameters are float32): the official evaluation runs in float32, while a
    SOTA workdir pretrained in bfloat16.

    Args:
      config: an evaluation config (`init`, `model`, `input`, `seed`); not modified.
      input_from_source: also take `input` from a workdir or export (the audio protocol: the
        features must come from the front end the model was trained with, spec §7). Video
        protocols keep their own input (clip length, crop size, augmentation).

    Raises:
      ConfigError: no or several sources given.
      InitError: a missing workdir, checkpoint or file; weights that do not fit the
        architecture (one line each).
    """
    config = ml_collections.ConfigDict(config.to_dict())  # an unlocked copy
    kind = init_kind(config.init)
    init = config.init
    if kind == "random":
        model = build_eval_model(config)
        info = {"kind": "random", "source": "", "step": None}
        return Pretrained(model, config, info, frozenset(), "random")
    if kind == "workdir":
        # The architecture is the workdir's; the compute dtype the evaluation's own.
        source_config, model, step = restore_workdir(
            init.workdir, _step(init), config.model.get("dtype")
        )
        _take_architecture(config, source_config.model)
        if input_from_source:
            _replace(config, "input", source_config.input)
        towers = {"video"} | ({"audio"} if hasattr(model, "audio_map") else set())
        info = {"kind": "workdir", "source": init.workdir, "step": step}
        return Pretrained(model, config, info, frozenset(towers), "workdir")
    return _load_torch(config, input_from_source)


def _load_torch(config: ml_collections.ConfigDict, input_from_source: bool) -> Pretrained:
    path, prefix = config.init.torch, config.init.get("prefix", "")
    prefix = prefix.removeprefix("module.")  # read_state_dict drops DDP's "module." first
    if not os.path.exists(path):
        raise InitError(f"init.torch: no such file or directory: {path}")
    info = {"kind": "torch", "source": path, "step": None}
    try:
        if os.path.isdir(path):
            return _load_export(config, path, info, input_from_source)
        checkpoint = weight_files.read_checkpoint(path)
        # Only names and shapes are kept: the loaders below read the tensors they need.
        shapes = {k: tuple(v.shape) for k, v in checkpoint.state.items()}
        other_entries = checkpoint.other_entries
        del checkpoint
        keys = set(shapes)
        official = any(k.startswith((OFFICIAL_VIDEO_PREFIX, OFFICIAL_AUDIO_PREFIX)) for k in keys)
        if prefix:
            inner = {k[len(prefix) :] for k in keys if k.startswith(prefix)}
            if not inner:
                raise InitError(
                    f"init.torch {path}: no key starts with prefix {prefix!r}; keys look like "
                    f"{sorted(keys)[:3]}"
                )
            parts = {tower: prefix + p for tower, p in _towers_of(inner).items()}
        elif official:
            parts = {
                tower: p
                for tower, p in (("video", OFFICIAL_VIDEO_PREFIX), ("audio", OFFICIAL_AUDIO_PREFIX))
                if any(k.startswith(p) for k in keys)
            }
        else:
            parts = _towers_of(keys)
        if not parts:
            raise InitError(
                f"init.torch {path}: neither an r2plus1d_18 nor a ResNet-9 audio state dict, nor "
                f"an official GDT/STiCA checkpoint (keys look like {sorted(keys)[:3]}); give "
                "--config.init.prefix=... to select a backbone inside a larger checkpoint"
            )
        fresh_pooling = _fresh_pooling(config, path, keys)  # before the weights are read
        model = build_eval_model(config)
        for tower, tower_prefix in parts.items():
            load = (
                from_torch.load_torchvision_r2plus1d18
                if tower == "video"
                else from_torch.load_torchvision_audio_resnet9
            )
            # The line below names what is left out, the dropped fc included.
            load(path, model, prefix=tower_prefix, log_dropped=False)
    except torch_names.UnsupportedArchitectureError as error:
        raise InitError(f"init.torch {path} cannot load into config.model: {error}") from None
    except (weight_files.StateDictMismatchError, weight_files.WeightFileError) as error:
        # The head of the mismatch report: the full list can be hundreds of keys.
        raise InitError(one_line(f"init.torch: {error}", max_lines=4)) from None
    model.eval()
    if official:
        _set_audio_frontend(config, OFFICIAL_AUDIO_FRONTEND)
    fmt = "official" if official else "torchvision"
    imported = _imported_keys(model, parts, keys)
    not_imported = _group_not_imported(keys - set().union(*imported.values()), parts, shapes)
    _print_chief(_load_line(path, fmt, parts, imported, not_imported, other_entries, fresh_pooling))
    counts = {group: len(members) for group, (members, _) in not_imported.items()}
    if fresh_pooling:  # results.json's `init` says the pooling was not pretrained
        info["fresh_pooling"] = True
    return Pretrained(model, config, info, frozenset(parts), fmt, counts)


def _fresh_pooling(config: ml_collections.ConfigDict, path: str, keys: Iterable[str]) -> bool:
    """Whether a video protocol's `pooling="transformer"` starts from a fresh transformer
    (`init.fresh_pooling=True`); refused with a one-line `InitError` otherwise.

    A state-dict file holds no temporal pooling of ours: an official STiCA checkpoint's is a
    different transformer (spec §3) that has no place in our model, a GDT or torchvision file
    has none. The protocol would then fine-tune (or, for the linear probe, freeze) a randomly
    initialised transformer, which must not pass for a pretrained one."""
    if config.get("pooling") != "transformer":
        return False
    if config.init.get("fresh_pooling", False):
        return True
    if any(k.startswith(OFFICIAL_POOLING_PREFIX) for k in keys):
        holds = (
            f"holds the official transformer pooling ({OFFICIAL_POOLING_PREFIX}*: "
            f"{_official_pooling(keys)}), which is not stica_jax's transformer (spec §3) and is "
            "not imported"
        )
    else:
        holds = "holds no temporal pooling (a GDT checkpoint or a torchvision state dict has none)"
    raise InitError(
        f"init.torch {path} {holds}, so pooling='transformer' would start from a randomly "
        "initialised transformer: use --config.pooling=avg (the official fine-tuning, "
        "--num_layer 0), or accept a fresh transformer with --config.init.fresh_pooling=True"
    )


def _official_pooling(keys: Iterable[str]) -> str:
    """What kind of official `TransformerPooling` the keys are (src/transformer.py: `qkv_mha`
    adds value and output projections, `positional_emb` an embedding; both off by default)."""
    keys = list(keys)
    qkv = any(k.startswith(OFFICIAL_POOLING_PREFIX) and ".mha.v_lin." in k for k in keys)
    position = any(k.startswith("video_pooling.2.pos_embs.") for k in keys)
    return (
        f"{'q/k/v' if qkv else 'q/k-only'} attention, "
        f"{'a' if position else 'no'} positional embedding, token 0 as output"
    )


def _imported_keys(
    model: nnx.Module, parts: Mapping[str, str], keys: set[str]
) -> dict[str, set[str]]:
    """{tower: the file's keys its backbone took}: the name table's keys under its prefix."""
    tables = {
        "video": lambda: torch_names.r2plus1d18_entries(model.video_backbone),
        "audio": lambda: torch_names.audio_resnet9_entries(model.audio_backbone),
    }
    return {tower: {p + e.torch_key for e in tables[tower]()} & keys for tower, p in parts.items()}


def _group_not_imported(
    left: set[str], parts: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[list[str], str]]:
    """The keys not imported, grouped: {prefix ending in "." or a whole key: (keys, what it
    is)}. A loaded tower's `fc` (which our backbones lack), the official pooling, heads and a
    tower outside `init.prefix` are named; any other key is grouped by its first name."""
    known = {
        OFFICIAL_POOLING_PREFIX: (
            f"the official transformer pooling with {_official_pooling(left)}: not stica_jax's, "
            "spec §3"
        )
    }
    for p in parts.values():
        if p + "fc.weight" in shapes:
            known[p + "fc."] = f"a {shapes[p + 'fc.weight'][0]}-way fc, which our backbones lack"
    known.update({k: v for k, v in OFFICIAL_EXTRAS.items() if k not in known})
    members: dict[str, list[str]] = {}
    for key in sorted(left):
        group = next(
            (g for g in known if key == g or (g.endswith(".") and key.startswith(g))), None
        )
        if group is None:
            group = key.split(".")[0] + "." if "." in key else key
        members.setdefault(group, []).append(key)
    return {group: (keys, known.get(group, "")) for group, keys in members.items()}


def _load_line(
    path: str,
    fmt: str,
    parts: Mapping[str, str],
    imported: Mapping[str, set[str]],
    not_imported: Mapping[str, tuple[list[str], str]],
    other_entries: Iterable[str],
    fresh_pooling: bool,
) -> str:
    """One line: what a state-dict file gave the model, and what it held that it did not."""
    kind = "an official GDT/STiCA checkpoint" if fmt == "official" else "a torchvision state dict"
    towers = []
    for tower, p in parts.items():
        keys = f"{p}*, " if p else ""
        towers.append(f"the {tower} backbone ({keys}{len(imported[tower])} tensors)")
    line = f"init.torch {path} ({kind}): imported {' and '.join(towers)}"
    if fmt == "official":
        line += f'; input.audio_frontend="{OFFICIAL_AUDIO_FRONTEND}"'
    left = [
        f"{group}{'*' if group.endswith('.') else ''} ({len(keys)} "
        f"tensor{'s' if len(keys) != 1 else ''}{': ' + what if what else ''})"
        for group, (keys, what) in not_imported.items()
    ]
    line += f"; not imported: {', '.join(left) if left else 'nothing'}"
    other_entries = list(other_entries)
    if other_entries:
        line += f"; the checkpoint's {', '.join(other_entries)}: not weights, not read"
    if fresh_pooling:
        line += (
            "; pooling='transformer' starts from a freshly initialised transformer "
            "(init.fresh_pooling=True)"
        )
    return line


def _print_chief(line: str) -> None:
    """`line` on stdout, from the first host only (every host loads the model)."""
    if jax.process_index() == 0:
        print(line, flush=True)


def _towers_of(keys: set[str]) -> dict[str, str]:
    """{tower: ""} of a torchvision-layout state dict: r2plus1d_18 has a (2+1)D `stem`,
    ResNet-9 a 2-D `conv1`."""
    if "stem.0.weight" in keys:
        return {"video": ""}
    if "conv1.weight" in keys and "layer1.0.conv1.weight" in keys:
        return {"audio": ""}
    return {}


def _load_export(
    config: ml_collections.ConfigDict, path: str, info: dict[str, Any], input_from_source: bool
) -> Pretrained:
    """An export directory of ours: the architecture (and input) from its manifest's config."""
    manifest_path = os.path.join(path, torch_names.MANIFEST_FILE)
    if not os.path.isfile(manifest_path):
        raise InitError(
            f"init.torch {path} is a directory without {torch_names.MANIFEST_FILE}: give a "
            "state-dict file, or an export directory of python -m stica_jax.export"
        )
    with open(manifest_path) as file:
        manifest = json.load(file)
    source_config = manifest.get("config") or {}
    if "model" in source_config:
        _take_architecture(config, source_config["model"])
    if input_from_source and "input" in source_config:
        _replace(config, "input", source_config["input"])
    info["step"] = manifest.get("step")
    if source_config.get("mode") == "supervised":
        raise InitError(
            f"init.torch {path} is the export of a supervised classifier; evaluate its "
            "workdir with --config.init.workdir, or give its r2plus1d_18.safetensors file"
        )
    model = build_eval_model(config)
    from_torch.import_model(path, model)
    model.eval()
    return Pretrained(model, config, info, frozenset({"video", "audio"}), "export")
