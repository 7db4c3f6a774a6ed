"""Reading weight files safely: safetensors, or PyTorch `.pth` state dicts, as numpy arrays.

`.pth` files are read with `torch.load(weights_only=True)` and never unpickled beyond that;
torch is imported only for them. Nothing here knows about stica_jax models: `from_torch` maps
the state dicts it returns onto them.
"""

import os
import pathlib
import struct
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file


class WeightFileError(ValueError):
    """A weight file that cannot be read safely (corrupt, truncated, or needs unpickling)."""


class StateDictMismatchError(ValueError):
    """A state dict whose keys or shapes do not match the target architecture."""


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
