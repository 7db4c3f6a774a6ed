"""Reading weight files safely: safetensors, or PyTorch `.pth` state dicts, as numpy arrays.

`.pth` files are read with `torch.load(weights_only=True)` and never unpickled beyond that,
with one exception: `argparse.Namespace`, which the official GDT training script
(facebookresearch/GDT `utils.save_checkpoint`) stores as the checkpoint's `args`. It is a plain
attribute bag whose unpickling sets attributes and runs no code; any other Python object is
still refused. torch is imported only for `.pth` files. Nothing here knows about stica_jax
models: `from_torch` maps the state dicts it returns onto them.
"""

import argparse
import dataclasses
import os
import pathlib
import re
import struct

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from data_pipeline.errors import first_line


class WeightFileError(ValueError):
    """A weight file that cannot be read safely (corrupt, truncated, or needs unpickling)."""


class StateDictMismatchError(ValueError):
    """A state dict whose keys or shapes do not match the target architecture."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A weight file's state dict, and the names of what else the file held beside it.

    Attributes:
      state: the tensors as numpy arrays, unwrapped from a training checkpoint, without DDP's
        `module.` prefix.
      other_entries: the other top-level entries of a training checkpoint (e.g. "epoch",
        "optimizer", "args"), never converted: callers can say what they left out.
    """

    state: dict[str, np.ndarray]
    other_entries: tuple[str, ...] = ()


def _looks_like_safetensors(path: pathlib.Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000


def _unpickling_detail(error: Exception) -> str:
    """The line of torch's error that names the refused object ("Unsupported global: GLOBAL
    pathlib.PosixPath ..."), else its first line; torch's advice to load with
    `weights_only=False` is not repeated."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch bolds part of its message
    found = re.search(r"Unsupported global: GLOBAL \S+", text)
    return found.group(0) if found else first_line(text)


def _torch_checkpoint(path: pathlib.Path) -> Checkpoint:
    try:  # Late: torch is optional (the `torch` extra) and heavy; only a PyTorch file needs it.
        import torch
    except ImportError as e:  # pragma: no cover - the `torch` extra is missing
        raise WeightFileError(
            f"{path}: reading a PyTorch file needs torch "
            "(pip install 'stica_jax[torch]'), or convert it to safetensors"
        ) from e
    # The official GDT checkpoints carry `args`, an argparse.Namespace: allowed for this load
    # only (a context, not torch's process-wide allowlist), unless the caller allowed it already.
    namespace = (
        [] if argparse.Namespace in torch.serialization.get_safe_globals() else [argparse.Namespace]
    )
    try:
        with torch.serialization.safe_globals(namespace):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise WeightFileError(
            f"{path} cannot be read with torch.load(weights_only=True): {type(e).__name__}: "
            f"{_unpickling_detail(e)}\n  It is corrupt, truncated, or a pickle "
            "of arbitrary Python objects (e.g. a whole nn.Module), which stica_jax refuses to "
            "unpickle. Save the weights only: `torch.save(model.state_dict(), path)` or "
            "`safetensors.torch.save_file(model.state_dict(), path)`."
        ) from e
    # Training checkpoints wrap the state dict: {"state_dict": ...}, {"model": ...}.
    others: list[str] = []
    for _ in range(2):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = [
                k
                for k in ("state_dict", "model_state_dict", "model", "module")
                if isinstance(obj.get(k), dict)
            ]
            if inner:
                others += [str(k) for k in obj if k != inner[0]]
                obj = obj[inner[0]]
    if not isinstance(obj, dict):
        raise WeightFileError(f"{path} holds a {type(obj).__name__}, not a state dict")
    out = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            out[key] = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    return Checkpoint(out, tuple(others))


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """A weight file's state dict (as `read_state_dict` without `prefix`), and the names of a
    training checkpoint's other entries (optimizer, epoch, ...), which are not read further.

    safetensors, or a `.pth`/`.pt` read with `torch.load(weights_only=True)`: tensors, plain
    containers and numbers, and `argparse.Namespace` (the official GDT checkpoints' `args`);
    any other pickled object is refused with `WeightFileError`.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        try:
            checkpoint = Checkpoint(load_file(path))
        except (SafetensorError, ValueError, OSError) as e:
            raise WeightFileError(
                f"{path} is not a readable safetensors file (corrupt or truncated?): {e}"
            ) from e
    else:
        checkpoint = _torch_checkpoint(path)
    state = checkpoint.state
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dataclasses.replace(checkpoint, state=state)


def read_state_dict(path: str | os.PathLike, *, prefix: str = "") -> dict[str, np.ndarray]:
    """A state dict as numpy arrays from safetensors, or from a `.pth`/`.pt` state dict.

    `.pth` files are read with `torch.load(weights_only=True)` (never a full unpickling: only
    `argparse.Namespace` is allowed beyond torch's defaults, see `read_checkpoint`);
    checkpoints wrapping the state dict under `state_dict`/`model` are unwrapped, and a
    DistributedDataParallel `module.` prefix is dropped. With `prefix`, only keys starting
    with it are kept, without it (e.g. the backbone's prefix inside a larger checkpoint).
    """
    state = read_checkpoint(path).state
    if prefix:
        selected = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not selected:
            raise StateDictMismatchError(
                f"{path}: no key starts with prefix {prefix!r}; keys look like {sorted(state)[:5]}"
            )
        state = selected
    return state
