"""PyTorch interop: export stica_jax models as torchvision-compatible safetensors, and import back.

`export_model` (or `python -m stica_jax.export.torch --workdir=DIR --out=DIR`, or
`--config=configs/sota.py` for a freshly initialised model) writes into `out`:

- `r2plus1d_18.safetensors`: the video backbone as a `torchvision.models.video.r2plus1d_18`
  state dict, BatchNorm running statistics included, with `fc` only for a `VideoClassifier`
  with average pooling (which *is* torchvision's r2plus1d_18);
- `resnet9_audio.safetensors`: the audio backbone as a
  `torchvision.models.resnet.ResNet(BasicBlock, [1, 1, 1, 1])` state dict with a 1-channel
  `conv1` and no `fc`;
- `stica_heads.safetensors`: temporal pooling (`video_pooling.*`, `nn.TransformerEncoderLayer`
  names) and projection heads (`video_head.*`, `audio_head.*`), or a transformer-pooled
  classifier's `fc.*`;
- `manifest.json`: config, step, architecture, tensor names/shapes, input conventions.

`stica_jax/export/torch_modules.py` rebuilds the whole model in PyTorch from that directory.
The import direction (`load_torchvision_r2plus1d18`, `load_torchvision_audio_resnet9`,
`import_model`) turns such state dicts, or torchvision's own `.pth` files, back into stica_jax
variables. Export needs no torch at all; import needs it only to read `.pth` files, which are
read with `torch.load(weights_only=True)` and never unpickled beyond that.
"""

import dataclasses
import json
import logging
import os
import pathlib
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from stica_jax.models.audio_resnet import AudioResNet
from stica_jax.models.classifier import VideoClassifier
from stica_jax.models.heads import ProjectionHead
from stica_jax.models.stica import STiCA
from stica_jax.models.temporal_pooling import AvgPool, TransformerPool
from stica_jax.models.video_resnet import VideoResNet

VIDEO_FILE = "r2plus1d_18.safetensors"
AUDIO_FILE = "resnet9_audio.safetensors"
HEADS_FILE = "stica_heads.safetensors"
MANIFEST_FILE = "manifest.json"
FORMAT = "stica_jax/torch-export/1"

TORCHVISION_WIDTHS = (64, 128, 256, 512)
R2PLUS1D_18_DEPTHS = (2, 2, 2, 2)

# Input conventions written into the manifest. They mirror data_pipeline.augment.VIDEO_MEAN/STD
# and data_pipeline.audio_features.log_mel_spectrogram's defaults (a test checks it); importing
# those modules here would pull in TensorFlow.
VIDEO_MEAN = 0.45
VIDEO_STD = 0.225
LOG_MEL_OFFSET = 1e-6

_log = logging.getLogger(__name__)


class UnsupportedArchitectureError(ValueError):
    """The model has no torchvision counterpart (e.g. a slim test variant)."""


class WeightFileError(ValueError):
    """A weight file that cannot be read safely (corrupt, truncated, or needs unpickling)."""


class StateDictMismatchError(ValueError):
    """A state dict whose keys or shapes do not match the target architecture."""


# --- name and layout mapping ----------------------------------------------------------------

Path = tuple[str | int, ...]


def _conv_to_torch(k):  # [*spatial, I, O] → [O, I, *spatial]
    nd = k.ndim - 2
    return np.transpose(k, (nd + 1, nd, *range(nd)))


def _conv_to_jax(t, shapes):
    nd = t.ndim - 2
    return [np.transpose(t, (*range(2, nd + 2), 1, 0))]


def _qkv_weight_to_torch(q, k, v):  # 3 × [D, heads, head_dim] → in_proj_weight [3D, D]
    return np.concatenate([x.reshape(x.shape[0], -1).T for x in (q, k, v)])


def _qkv_weight_to_jax(t, shapes):
    return [part.T.reshape(s) for part, s in zip(np.split(t, 3), shapes)]


def _qkv_bias_to_torch(q, k, v):  # 3 × [heads, head_dim] → in_proj_bias [3D]
    return np.concatenate([x.reshape(-1) for x in (q, k, v)])


def _qkv_bias_to_jax(t, shapes):
    return [part.reshape(s) for part, s in zip(np.split(t, 3), shapes)]


# kind → (to_torch(*jax_arrays), to_jax(torch_array, jax_shapes) -> list of jax arrays)
_CONVERTERS: dict[str, tuple[Callable, Callable]] = {
    "same": (lambda x: x, lambda t, shapes: [t]),
    "conv": (_conv_to_torch, _conv_to_jax),
    "linear": (lambda k: k.T, lambda t, shapes: [t.T]),  # [in, out] ↔ [out, in]
    "qkv_weight": (_qkv_weight_to_torch, _qkv_weight_to_jax),
    "qkv_bias": (_qkv_bias_to_torch, _qkv_bias_to_jax),
    # out.kernel [heads, head_dim, D] ↔ out_proj.weight [D, D]
    "out_weight": (
        lambda k: k.reshape(-1, k.shape[-1]).T,
        lambda t, shapes: [t.T.reshape(shapes[0])],
    ),
}


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One torch tensor and the stica_jax variable(s) it is made of."""

    torch_key: str
    jax_paths: tuple[Path, ...]  # empty for BatchNorm's num_batches_tracked
    kind: str

    def under(self, torch_prefix: str, jax_prefix: Path) -> "_Entry":
        return _Entry(
            torch_prefix + self.torch_key, tuple(jax_prefix + p for p in self.jax_paths), self.kind
        )


def _e(torch_key: str, path: Path, kind: str = "same") -> _Entry:
    return _Entry(torch_key, (path,), kind)


def _bn(t: str, p: Path) -> list[_Entry]:
    return [
        _e(f"{t}.weight", p + ("scale",)),
        _e(f"{t}.bias", p + ("bias",)),
        _e(f"{t}.running_mean", p + ("mean",)),
        _e(f"{t}.running_var", p + ("var",)),
        _Entry(f"{t}.num_batches_tracked", (), "count"),
    ]


def _under(entries: Iterable[_Entry], torch_prefix: str, jax_prefix: Path) -> list[_Entry]:
    return [e.under(torch_prefix, jax_prefix) for e in entries]


def _video_entries(backbone: VideoResNet) -> list[_Entry]:
    """torchvision r2plus1d_18 names (without fc) of a VideoResNet's variables."""
    entries = [
        _e("stem.0.weight", ("stem", "spatial", "kernel"), "conv"),
        *_bn("stem.1", ("stem", "bn1")),
        _e("stem.3.weight", ("stem", "temporal", "kernel"), "conv"),
        *_bn("stem.4", ("stem", "bn2")),
    ]
    for i, layer in enumerate(backbone.layers):
        for j, block in enumerate(layer):
            t, p = f"layer{i + 1}.{j}", ("layers", i, j)
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
                entries += [
                    _e(f"{t}.{conv}.0.0.weight", p + (conv, "spatial", "kernel"), "conv"),
                    *_bn(f"{t}.{conv}.0.1", p + (conv, "bn")),
                    _e(f"{t}.{conv}.0.3.weight", p + (conv, "temporal", "kernel"), "conv"),
                    *_bn(f"{t}.{conv}.1", p + (bn,)),
                ]
            if block.downsample_conv is not None:
                entries += [
                    _e(f"{t}.downsample.0.weight", p + ("downsample_conv", "kernel"), "conv"),
                    *_bn(f"{t}.downsample.1", p + ("downsample_bn",)),
                ]
    return entries


def _audio_entries(backbone: AudioResNet) -> list[_Entry]:
    """torchvision ResNet(BasicBlock, [1, 1, 1, 1]) names (without fc) of an AudioResNet."""
    entries = [_e("conv1.weight", ("conv1", "kernel"), "conv"), *_bn("bn1", ("bn1",))]
    for i, block in enumerate(backbone.layers):
        t, p = f"layer{i + 1}.0", ("layers", i)
        entries += [
            _e(f"{t}.conv1.weight", p + ("conv1", "kernel"), "conv"),
            *_bn(f"{t}.bn1", p + ("bn1",)),
            _e(f"{t}.conv2.weight", p + ("conv2", "kernel"), "conv"),
            *_bn(f"{t}.bn2", p + ("bn2",)),
        ]
        if block.downsample_conv is not None:
            entries += [
                _e(f"{t}.downsample.0.weight", p + ("downsample_conv", "kernel"), "conv"),
                *_bn(f"{t}.downsample.1", p + ("downsample_bn",)),
            ]
    return entries


def _fc_entries() -> list[_Entry]:
    return [_e("fc.weight", ("fc", "kernel"), "linear"), _e("fc.bias", ("fc", "bias"))]


def _pooling_entries(pooling: nnx.Module) -> list[_Entry]:
    """`torch_modules.TransformerPool` names (nn.TransformerEncoderLayer inside); none for avg."""
    if isinstance(pooling, AvgPool):
        return []
    if not isinstance(pooling, TransformerPool):
        raise UnsupportedArchitectureError(f"no PyTorch counterpart for {type(pooling).__name__}")
    entries = [_e("pos_embedding", ("pos_embedding",))]
    for i in range(len(pooling.layers)):
        t, p = f"layers.{i}", ("layers", i)
        a = p + ("attention",)
        entries += [
            _Entry(
                f"{t}.self_attn.in_proj_weight",
                tuple(a + (n, "kernel") for n in ("query", "key", "value")),
                "qkv_weight",
            ),
            _Entry(
                f"{t}.self_attn.in_proj_bias",
                tuple(a + (n, "bias") for n in ("query", "key", "value")),
                "qkv_bias",
            ),
            _e(f"{t}.self_attn.out_proj.weight", a + ("out", "kernel"), "out_weight"),
            _e(f"{t}.self_attn.out_proj.bias", a + ("out", "bias")),
            _e(f"{t}.linear1.weight", p + ("linear1", "kernel"), "linear"),
            _e(f"{t}.linear1.bias", p + ("linear1", "bias")),
            _e(f"{t}.linear2.weight", p + ("linear2", "kernel"), "linear"),
            _e(f"{t}.linear2.bias", p + ("linear2", "bias")),
            _e(f"{t}.norm1.weight", p + ("norm1", "scale")),
            _e(f"{t}.norm1.bias", p + ("norm1", "bias")),
            _e(f"{t}.norm2.weight", p + ("norm2", "scale")),
            _e(f"{t}.norm2.bias", p + ("norm2", "bias")),
        ]
    return entries


def _head_entries() -> list[_Entry]:
    return [
        _e("fc1.weight", ("fc1", "kernel"), "linear"),
        *_bn("bn", ("bn",)),
        _e("fc2.weight", ("fc2", "kernel"), "linear"),
        _e("fc2.bias", ("fc2", "bias")),
    ]


def _heads_file_entries(model: nnx.Module) -> list[_Entry]:
    """Entries of `stica_heads.safetensors` for a STiCA or a transformer-pooled classifier."""
    entries = _under(_pooling_entries(model.video_pooling), "video_pooling.", ("video_pooling",))
    if isinstance(model, STiCA):
        entries += _under(_head_entries(), "video_head.", ("video_head",))
        entries += _under(_head_entries(), "audio_head.", ("audio_head",))
    elif not isinstance(model.video_pooling, AvgPool):  # classifier: fc after the transformer
        entries += _fc_entries()
    return entries


# --- reading and writing variables ----------------------------------------------------------


def _variable(root: nnx.Module, path: Path) -> nnx.Variable:
    node: Any = root
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    if not isinstance(node, nnx.Variable):
        raise TypeError(f"{'.'.join(map(str, path))} is a {type(node).__name__}, not a variable")
    return node


def _to_torch_arrays(
    root: nnx.Module, entries: Sequence[_Entry], step: int
) -> dict[str, np.ndarray]:
    out = {}
    for e in entries:
        if e.kind == "count":  # torch's BatchNorm update counter; only used with momentum=None
            out[e.torch_key] = np.array(step, np.int64)
            continue
        arrays = [np.asarray(jax.device_get(_variable(root, p).get_value())) for p in e.jax_paths]
        out[e.torch_key] = np.ascontiguousarray(_CONVERTERS[e.kind][0](*arrays))
    return out


def _torch_shape(e: _Entry, jax_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    if e.kind == "count":
        return ()
    return tuple(_CONVERTERS[e.kind][0](*[np.empty(s, np.float32) for s in jax_shapes]).shape)


def _list_names(title: str, names: Sequence[str], limit: int = 40) -> str:
    shown = ", ".join(names[:limit]) + (
        f", ... and {len(names) - limit} more" if len(names) > limit else ""
    )
    return f"\n  {title} ({len(names)}): {shown}"


@dataclasses.dataclass
class _Plan:
    """Validated assignments: (variable, array) pairs, applied only once everything matched."""

    assignments: list[tuple[nnx.Variable, np.ndarray]] = dataclasses.field(default_factory=list)

    def apply(self) -> None:
        for var, array in self.assignments:
            var.set_value(jnp.asarray(array, dtype=var.get_value().dtype))


def _plan(
    root: nnx.Module,
    entries: Sequence[_Entry],
    state: dict[str, np.ndarray],
    *,
    source: str,
    target: str,
    plan: _Plan,
) -> None:
    """Match `state` against `entries` exactly (every key, every shape) or raise by name."""
    expected = {e.torch_key: e for e in entries}
    missing = [k for k, e in expected.items() if k not in state and e.kind != "count"]
    unexpected = [k for k in state if k not in expected]
    mismatched, pending = [], []
    for key, e in expected.items():
        if key not in state or e.kind == "count":
            continue  # num_batches_tracked is optional and unused (stica_jax has no counter)
        variables = [_variable(root, p) for p in e.jax_paths]
        shapes = [tuple(v.get_value().shape) for v in variables]
        want, got = _torch_shape(e, shapes), tuple(state[key].shape)
        if want != got:
            mismatched.append(f"{key} {list(got)} (expected {list(want)})")
            continue
        pending.extend(zip(variables, _CONVERTERS[e.kind][1](np.asarray(state[key]), shapes)))
    if missing or unexpected or mismatched:
        message = f"{source} does not match {target}:"
        if missing:
            message += _list_names("missing keys", missing)
        if unexpected:
            message += _list_names("unexpected keys", unexpected)
        if mismatched:
            message += _list_names("shape mismatches", mismatched)
        if len(missing) > len(expected) // 2:
            message += (
                "\n  (most keys are missing: is this a state dict of another "
                "architecture, or does it need a `prefix`?)"
            )
        raise StateDictMismatchError(message)
    plan.assignments.extend(pending)


# --- weight files ---------------------------------------------------------------------------


def _looks_like_safetensors(path: pathlib.Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000


def _torch_state_dict(path: pathlib.Path) -> dict[str, Any]:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - the `torch` extra is missing
        raise WeightFileError(
            f"{path}: reading a PyTorch file needs torch "
            "(pip install 'stica_jax[torch]'), or convert it to safetensors"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise WeightFileError(
            f"{path} cannot be read with torch.load(weights_only=True): {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}\n  It is corrupt, truncated, or a pickle "
            "of arbitrary Python objects (e.g. a whole nn.Module), which stica_jax refuses to "
            "unpickle. Save the weights only: `torch.save(model.state_dict(), path)` or "
            "`safetensors.torch.save_file(model.state_dict(), path)`."
        ) from e
    # Training checkpoints wrap the state dict: {"state_dict": ...}, {"model": ...}.
    for _ in range(2):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = [
                obj[k]
                for k in ("state_dict", "model_state_dict", "model", "module")
                if isinstance(obj.get(k), dict)
            ]
            if inner:
                obj = inner[0]
    if not isinstance(obj, dict):
        raise WeightFileError(f"{path} holds a {type(obj).__name__}, not a state dict")
    out = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            out[key] = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    return out


def read_state_dict(path: str | os.PathLike, *, prefix: str = "") -> dict[str, np.ndarray]:
    """A state dict as numpy arrays from safetensors, or from a `.pth`/`.pt` state dict.

    `.pth` files are read with `torch.load(weights_only=True)` (never a full unpickling);
    checkpoints wrapping the state dict under `state_dict`/`model` are unwrapped, and a
    DistributedDataParallel `module.` prefix is dropped. With `prefix`, only keys starting
    with it are kept, without it (e.g. the backbone's prefix inside a larger checkpoint).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        try:
            state = load_file(path)
        except (SafetensorError, ValueError, OSError) as e:
            raise WeightFileError(
                f"{path} is not a readable safetensors file (corrupt or truncated?): {e}"
            ) from e
    else:
        state = _torch_state_dict(path)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    if prefix:
        selected = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not selected:
            raise StateDictMismatchError(
                f"{path}: no key starts with prefix {prefix!r}; keys look like {sorted(state)[:5]}"
            )
        state = selected
    return state


def _save(path: pathlib.Path, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    save_file(tensors, path, metadata={"format": "pt", "producer": "stica_jax"})
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()}


# --- export ---------------------------------------------------------------------------------


def _require_torchvision_video(backbone: VideoResNet) -> None:
    if backbone.widths != TORCHVISION_WIDTHS or backbone.depths != R2PLUS1D_18_DEPTHS:
        raise UnsupportedArchitectureError(
            f"the video backbone (widths {backbone.widths}, depths {backbone.depths}) has no "
            f"torchvision counterpart: r2plus1d_18 needs widths {TORCHVISION_WIDTHS} and depths "
            f"{R2PLUS1D_18_DEPTHS}. Slim variants cannot be exported to PyTorch."
        )


def _require_torchvision_audio(backbone: AudioResNet) -> None:
    if backbone.widths != TORCHVISION_WIDTHS:
        raise UnsupportedArchitectureError(
            f"the audio backbone (widths {backbone.widths}) has no torchvision counterpart: "
            f"ResNet(BasicBlock, [1, 1, 1, 1]) needs widths {TORCHVISION_WIDTHS}. Slim variants "
            "cannot be exported to PyTorch."
        )


def _pooling_arch(pooling: nnx.Module) -> dict[str, Any]:
    if isinstance(pooling, AvgPool):
        return {"kind": "avg"}
    max_len, width = pooling.pos_embedding.get_value().shape
    layer = pooling.layers[0]
    heads = layer.attention.query.kernel.get_value().shape[1]
    return {
        "kind": "transformer",
        "width": int(width),
        "num_layers": len(pooling.layers),
        "num_heads": int(heads),
        "mlp_width": int(layer.linear1.kernel.get_value().shape[1]),
        "max_len": int(max_len),
        "activation": "gelu (exact erf)",
        "norm_first": False,
        "layer_norm_eps": 1e-5,
        "output": "mean of the output tokens",
    }


def _head_arch(head: ProjectionHead) -> dict[str, Any]:
    in_features, hidden = head.fc1.kernel.get_value().shape
    return {
        "in_features": int(in_features),
        "hidden": int(hidden),
        "out_features": int(head.fc2.kernel.get_value().shape[1]),
        "dropout": head.dropout1.rate,
        "output": "L2-normalised",
    }


def _json_config(config: Any) -> Any:
    if config is None:
        return None
    return json.loads(
        json.dumps(
            config.to_dict() if hasattr(config, "to_dict") else dict(config),
            default=lambda o: list(o) if isinstance(o, tuple) else str(o),
        )
    )


def _input_conventions(config: Any) -> dict[str, Any]:
    inp = config.get("input", {}) if config is not None else {}
    get = lambda key: inp.get(key) if inp else None  # noqa: E731
    return {
        "video": {
            "torch_layout": "NCTHW",
            "jax_layout": "NTHWC",
            "channels": "RGB",
            "normalisation": "(pixel / 255 - mean) / std",
            "mean": [VIDEO_MEAN] * 3,
            "std": [VIDEO_STD] * 3,
            "num_frames": get("num_frames"),
            "fps": get("fps"),
            "crop_size": get("crop_size"),
        },
        "audio": {
            "torch_layout": "N1FT (batch, 1, mel bins, frames)",
            "jax_layout": "NFT1",
            "feature": "log(mel_power + log_offset): |STFT|^2 with a periodic Hann window, "
            "no end padding, HTK mel filterbank from 0 Hz to Nyquist (tf.signal)",
            "log_offset": LOG_MEL_OFFSET,
            "sample_rate": get("sample_rate"),
            "num_mel_bins": get("num_mel_bins"),
            "window_length": get("window_length"),
            "hop_length": get("hop_length"),
            "fft_length": get("fft_length"),
            "seconds": get("audio_seconds"),
            "channels": "mono",
        },
    }


def export_model(
    model: nnx.Module, config: Any, out_dir: str | os.PathLike, step: int = 0
) -> dict[str, Any]:
    """Write `model` (a `STiCA` or `VideoClassifier`) as PyTorch safetensors + `manifest.json`.

    Args:
      model: full-size backbones (slim variants raise `UnsupportedArchitectureError`).
      config: the model's ConfigDict (written into the manifest; may be None).
      out_dir: created if missing; existing export files are overwritten.
      step: training step, written into the manifest and as BatchNorm `num_batches_tracked`.
    Returns the manifest.
    """
    if not isinstance(model, (STiCA, VideoClassifier)):
        raise TypeError(
            f"export_model takes a STiCA or VideoClassifier, got {type(model).__name__}"
        )
    _require_torchvision_video(model.video_backbone)
    is_stica = isinstance(model, STiCA)
    if is_stica:
        _require_torchvision_audio(model.audio_backbone)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    video_entries = _under(_video_entries(model.video_backbone), "", ("video_backbone",))
    fc_in_video = not is_stica and isinstance(model.video_pooling, AvgPool)
    if fc_in_video:
        video_entries += _fc_entries()
    files = {VIDEO_FILE: _save(out / VIDEO_FILE, _to_torch_arrays(model, video_entries, step))}
    num_classes = int(model.fc.kernel.get_value().shape[1]) if not is_stica else None
    arch: dict[str, Any] = {
        "model_type": "stica" if is_stica else "video_classifier",
        "video_backbone": {
            "file": VIDEO_FILE,
            "torchvision": "torchvision.models.video.r2plus1d_18",
            "has_fc": fc_in_video,
            "num_classes": num_classes if fc_in_video else None,
            "load": (
                "model = r2plus1d_18(num_classes=num_classes); model.load_state_dict(sd)"
                if fc_in_video
                else "model = r2plus1d_18(); model.fc = torch.nn.Identity(); "
                "model.load_state_dict(sd)  # strict; no fc in this file"
            ),
        },
        "video_pooling": _pooling_arch(model.video_pooling),
    }
    if is_stica:
        audio_entries = _under(_audio_entries(model.audio_backbone), "", ("audio_backbone",))
        files[AUDIO_FILE] = _save(out / AUDIO_FILE, _to_torch_arrays(model, audio_entries, step))
        arch["audio_backbone"] = {
            "file": AUDIO_FILE,
            "torchvision": "torchvision.models.resnet.ResNet(BasicBlock, [1, 1, 1, 1])",
            "load": (
                "model = ResNet(BasicBlock, [1, 1, 1, 1]); model.conv1 = "
                "torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False); model.fc = torch.nn.Identity(); "
                "model.load_state_dict(sd)  # strict; no fc in this file"
            ),
        }
        arch["video_head"] = _head_arch(model.video_head)
        arch["audio_head"] = _head_arch(model.audio_head)
    elif not fc_in_video:
        arch["fc"] = {
            "in_features": int(model.fc.kernel.get_value().shape[0]),
            "out_features": num_classes,
        }
    heads_entries = _heads_file_entries(model)
    if heads_entries:
        files[HEADS_FILE] = _save(out / HEADS_FILE, _to_torch_arrays(model, heads_entries, step))
        arch["heads_file"] = HEADS_FILE
    manifest = {
        "format": FORMAT,
        "step": int(step),
        "architecture": arch,
        "inputs": _input_conventions(config),
        "files": files,
        "config": _json_config(config),
        "rebuild": "stica_jax/export/torch_modules.py: load_export(export_dir)",
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --- import ---------------------------------------------------------------------------------


def _abstract(make: Callable[[], nnx.Module]) -> nnx.Module:
    """A module whose variables hold only shapes; every one of them is assigned on import."""
    return nnx.eval_shape(make)


def _check_concrete(model: nnx.Module) -> None:
    abstract = [
        jax.tree_util.keystr(p)
        for p, v in jax.tree_util.tree_leaves_with_path(nnx.state(model))
        if isinstance(v, jax.ShapeDtypeStruct)
    ]
    if abstract:  # pragma: no cover - would be a bug in the key tables
        raise RuntimeError(f"variables left unassigned by the import: {abstract}")


def _video_backbone(model: nnx.Module) -> VideoResNet:
    return model if isinstance(model, VideoResNet) else model.video_backbone


def load_torchvision_r2plus1d18(
    path: str | os.PathLike, model: nnx.Module | None = None, *, prefix: str = ""
) -> nnx.Module:
    """stica_jax weights from a torchvision `r2plus1d_18` state dict (safetensors or `.pth`).

    Args:
      path: e.g. torchvision's Kinetics-400 `r2plus1d_18-91a641e6.pth`, or the
        `r2plus1d_18.safetensors` of an export.
      model: where to put the weights (updated in place): a `VideoResNet`, a `VideoClassifier`
        (backbone, and `fc` when its shape fits; otherwise `fc` keeps its initialisation and
        the file's is reported as dropped) or a `STiCA` (video backbone; `fc` dropped and
        reported). None builds one: a `VideoClassifier(num_classes, pooling="avg")` when the
        file has `fc` (torchvision's model exactly), else a `VideoResNet`, in eval mode.
      prefix: keep only keys with this prefix (a backbone inside a larger checkpoint).
    Returns `model`. Missing/unexpected keys and shape mismatches raise
    `StateDictMismatchError` naming them; the model is then left unchanged.
    """
    if model is not None and not isinstance(model, (VideoResNet, VideoClassifier, STiCA)):
        raise TypeError(f"cannot load r2plus1d_18 weights into a {type(model).__name__}")
    if model is not None:
        _require_torchvision_video(_video_backbone(model))
    state = read_state_dict(path, prefix=prefix)
    fc = {k: state.pop(k) for k in ("fc.weight", "fc.bias") if k in state}
    created = model is None
    if created:
        if "fc.weight" in fc:
            num_classes = fc["fc.weight"].shape[0]
            model = _abstract(lambda: VideoClassifier(num_classes, pooling="avg", rngs=nnx.Rngs(0)))
        else:
            model = _abstract(lambda: VideoResNet(rngs=nnx.Rngs(0)))
    backbone = _video_backbone(model)
    fc_root = model if isinstance(model, VideoClassifier) else None
    plan = _Plan()
    _plan(
        backbone,
        _video_entries(backbone),
        state,
        source=str(path),
        target="torchvision r2plus1d_18",
        plan=plan,
    )
    if fc and fc_root is not None:
        try:
            _plan(fc_root, _fc_entries(), fc, source=str(path), target="the model's fc", plan=plan)
        except StateDictMismatchError as e:
            _log.warning("%s: fc not loaded, model.fc keeps its initialisation: %s", path, e)
    elif fc:
        _log.warning(
            "%s: dropped %s (the %s has no classifier)", path, ", ".join(fc), type(model).__name__
        )
    elif fc_root is not None:
        _log.warning("%s has no fc: model.fc keeps its initialisation", path)
    plan.apply()
    if created:
        _check_concrete(model)
        model.eval()
    return model


def load_torchvision_audio_resnet9(
    path: str | os.PathLike, model: nnx.Module | None = None, *, prefix: str = ""
) -> nnx.Module:
    """stica_jax weights from a torchvision `ResNet(BasicBlock, [1, 1, 1, 1])` state dict.

    `conv1` must have 1 input channel. `model`: an `AudioResNet` or a `STiCA` (its audio
    backbone), updated in place; None builds an `AudioResNet` in eval mode. A `fc` in the file
    is dropped and reported. Mismatches raise `StateDictMismatchError` naming the keys.
    """
    created = model is None
    if created:
        model = _abstract(lambda: AudioResNet(rngs=nnx.Rngs(0)))
    if isinstance(model, STiCA):
        backbone = model.audio_backbone
    elif isinstance(model, AudioResNet):
        backbone = model
    else:
        raise TypeError(f"cannot load audio ResNet weights into a {type(model).__name__}")
    _require_torchvision_audio(backbone)
    state = read_state_dict(path, prefix=prefix)
    fc = [k for k in ("fc.weight", "fc.bias") if state.pop(k, None) is not None]
    if fc:
        _log.warning("%s: dropped %s (the audio backbone has no classifier)", path, ", ".join(fc))
    plan = _Plan()
    _plan(
        backbone,
        _audio_entries(backbone),
        state,
        source=str(path),
        target="torchvision ResNet(BasicBlock, [1, 1, 1, 1]) with a 1-channel conv1",
        plan=plan,
    )
    plan.apply()
    if created:
        _check_concrete(model)
        model.eval()
    return model


def import_model(export_dir: str | os.PathLike, model: nnx.Module) -> nnx.Module:
    """Load an export directory (e.g. after fine-tuning in PyTorch) back into `model` in place.

    `model` must have the exported structure (a `STiCA` or `VideoClassifier`); every tensor of
    every file must match, or `StateDictMismatchError` names what does not.
    """
    d = pathlib.Path(export_dir)
    manifest = json.loads((d / MANIFEST_FILE).read_text())
    if manifest.get("format") != FORMAT:
        raise WeightFileError(f"{d / MANIFEST_FILE}: unknown format {manifest.get('format')!r}")
    if not isinstance(model, (STiCA, VideoClassifier)):
        raise TypeError(
            f"import_model takes a STiCA or VideoClassifier, got {type(model).__name__}"
        )
    _require_torchvision_video(model.video_backbone)
    plan = _Plan()
    video_entries = _under(_video_entries(model.video_backbone), "", ("video_backbone",))
    if isinstance(model, VideoClassifier) and isinstance(model.video_pooling, AvgPool):
        video_entries += _fc_entries()
    _plan(
        model,
        video_entries,
        read_state_dict(d / VIDEO_FILE),
        source=str(d / VIDEO_FILE),
        target=f"the video backbone of the {type(model).__name__}",
        plan=plan,
    )
    if isinstance(model, STiCA):
        _require_torchvision_audio(model.audio_backbone)
        _plan(
            model,
            _under(_audio_entries(model.audio_backbone), "", ("audio_backbone",)),
            read_state_dict(d / AUDIO_FILE),
            source=str(d / AUDIO_FILE),
            target="the audio backbone",
            plan=plan,
        )
    heads = _heads_file_entries(model)
    if heads:
        _plan(
            model,
            heads,
            read_state_dict(d / HEADS_FILE),
            source=str(d / HEADS_FILE),
            target="the temporal pooling and heads",
            plan=plan,
        )
    plan.apply()
    return model


# --- command line ---------------------------------------------------------------------------


def export_from_workdir(workdir: str, out_dir: str, step: int | None = None) -> dict[str, Any]:
    """Export the checkpoint of `workdir` at `step` (None: the latest)."""
    # Late: restoring imports the trainer, and with it TensorFlow (see `stica_jax.restore`).
    from stica_jax import restore

    config, model, restored_step = restore.restore_model(workdir, step)
    return export_model(model, config, out_dir, step=restored_step)


def export_from_config(config: Any, out_dir: str, seed: int = 0) -> dict[str, Any]:
    """Export a freshly initialised model of `config` (to check a PyTorch setup): a STiCA, or
    a `VideoClassifier` for a `mode="supervised"` config."""
    from stica_jax.models import build_train_model

    model = build_train_model(config, rngs=nnx.Rngs(seed))
    model.eval()
    return export_model(model, config, out_dir, step=0)


def _main() -> None:
    from absl import app, flags
    from ml_collections import config_flags

    workdir = flags.DEFINE_string("workdir", None, "Training workdir whose checkpoint to export.")
    step = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
    config = config_flags.DEFINE_config_file(
        "config", None, "Config file: export a freshly initialised model instead.", lock_config=True
    )
    out = flags.DEFINE_string("out", None, "Output directory.", required=True)
    seed = flags.DEFINE_integer("seed", 0, "Initialisation seed with --config.")

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}")
        if (workdir.value is None) == (config.value is None):
            raise app.UsageError("give exactly one of --workdir or --config")
        if workdir.value is not None:
            manifest = export_from_workdir(workdir.value, out.value, step.value)
        else:
            manifest = export_from_config(config.value, out.value, seed.value)
        for name, tensors in manifest["files"].items():
            print(f"{os.path.join(out.value, name)}: {len(tensors)} tensors")
        print(f"{os.path.join(out.value, MANIFEST_FILE)}: step {manifest['step']}")

    app.run(main)


if __name__ == "__main__":
    _main()
