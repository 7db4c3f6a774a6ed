"""The table of names: which torchvision / PyTorch tensor each stica_jax variable becomes.

One `Entry` per PyTorch tensor: its state-dict key, the stica_jax variable path(s) it is made
of, and the layout conversion between them (`CONVERTERS`: channels-last kernels ↔ torch's
`[out, in, *spatial]`, Flax's per-head attention kernels ↔ `nn.MultiheadAttention`'s packed
`in_proj_weight`, ...). Both directions read the same table: `to_torch` (export) and
`from_torch` (import). Keys follow torchvision's `r2plus1d_18` and `ResNet(BasicBlock, [1, 1, 1,
1])`, and `torch_modules.py`'s pooling and heads.
"""

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from flax import nnx

from stica_jax.models.audio_resnet import AudioResNet
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


class UnsupportedArchitectureError(ValueError):
    """The model has no torchvision counterpart (e.g. a slim test variant)."""


Path = tuple[str | int, ...]  # attribute names and list indices from a module to a variable


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
CONVERTERS: dict[str, tuple[Callable, Callable]] = {
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
class Entry:
    """One torch tensor and the stica_jax variable(s) it is made of."""

    torch_key: str
    jax_paths: tuple[Path, ...]  # empty for BatchNorm's num_batches_tracked
    kind: str

    def under(self, torch_prefix: str, jax_prefix: Path) -> "Entry":
        """This entry inside a parent module: both names prefixed."""
        return Entry(
            torch_prefix + self.torch_key, tuple(jax_prefix + p for p in self.jax_paths), self.kind
        )


def _e(torch_key: str, path: Path, kind: str = "same") -> Entry:
    return Entry(torch_key, (path,), kind)


def _bn(t: str, p: Path) -> list[Entry]:
    return [
        _e(f"{t}.weight", p + ("scale",)),
        _e(f"{t}.bias", p + ("bias",)),
        _e(f"{t}.running_mean", p + ("mean",)),
        _e(f"{t}.running_var", p + ("var",)),
        Entry(f"{t}.num_batches_tracked", (), "count"),
    ]


def prefixed(entries: Iterable[Entry], torch_prefix: str, jax_prefix: Path) -> list[Entry]:
    """`entries` of a submodule, as seen from its parent (both names prefixed)."""
    return [e.under(torch_prefix, jax_prefix) for e in entries]


def r2plus1d18_entries(backbone: VideoResNet) -> list[Entry]:
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


def audio_resnet9_entries(backbone: AudioResNet) -> list[Entry]:
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


def fc_entries() -> list[Entry]:
    """A classifier's `fc` (torchvision's name for it too)."""
    return [_e("fc.weight", ("fc", "kernel"), "linear"), _e("fc.bias", ("fc", "bias"))]


def _pooling_entries(pooling: nnx.Module) -> list[Entry]:
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
            Entry(
                f"{t}.self_attn.in_proj_weight",
                tuple(a + (n, "kernel") for n in ("query", "key", "value")),
                "qkv_weight",
            ),
            Entry(
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


def _head_entries() -> list[Entry]:
    return [
        _e("fc1.weight", ("fc1", "kernel"), "linear"),
        *_bn("bn", ("bn",)),
        _e("fc2.weight", ("fc2", "kernel"), "linear"),
        _e("fc2.bias", ("fc2", "bias")),
    ]


def heads_file_entries(model: nnx.Module) -> list[Entry]:
    """Entries of `stica_heads.safetensors` for a STiCA or a transformer-pooled classifier."""
    entries = prefixed(_pooling_entries(model.video_pooling), "video_pooling.", ("video_pooling",))
    if isinstance(model, STiCA):
        entries += prefixed(_head_entries(), "video_head.", ("video_head",))
        entries += prefixed(_head_entries(), "audio_head.", ("audio_head",))
    elif not isinstance(model.video_pooling, AvgPool):  # classifier: fc after the transformer
        entries += fc_entries()
    return entries


def variable_at(root: nnx.Module, path: Path) -> nnx.Variable:
    """The variable of `root` at `path` (attribute names, and indices into lists of layers)."""
    node: Any = root
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    if not isinstance(node, nnx.Variable):
        raise TypeError(f"{'.'.join(map(str, path))} is a {type(node).__name__}, not a variable")
    return node


def require_torchvision_video(backbone: VideoResNet) -> None:
    """Raise `UnsupportedArchitectureError` unless `backbone` is r2plus1d_18's shape."""
    if backbone.widths != TORCHVISION_WIDTHS or backbone.depths != R2PLUS1D_18_DEPTHS:
        raise UnsupportedArchitectureError(
            f"the video backbone (widths {backbone.widths}, depths {backbone.depths}) has no "
            f"torchvision counterpart: r2plus1d_18 needs widths {TORCHVISION_WIDTHS} and depths "
            f"{R2PLUS1D_18_DEPTHS}. Slim variants cannot be exported to PyTorch."
        )


def require_torchvision_audio(backbone: AudioResNet) -> None:
    """Raise `UnsupportedArchitectureError` unless `backbone` is torchvision's ResNet-9 shape."""
    if backbone.widths != TORCHVISION_WIDTHS:
        raise UnsupportedArchitectureError(
            f"the audio backbone (widths {backbone.widths}) has no torchvision counterpart: "
            f"ResNet(BasicBlock, [1, 1, 1, 1]) needs widths {TORCHVISION_WIDTHS}. Slim variants "
            "cannot be exported to PyTorch."
        )
