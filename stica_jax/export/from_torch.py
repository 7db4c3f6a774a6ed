"""Import (files → JAX): torchvision / PyTorch state dicts into stica_jax models.

`load_torchvision_r2plus1d18` and `load_torchvision_audio_resnet9` take one state dict (an
export's safetensors, or torchvision's own `.pth`); `import_model` a whole export directory.
Every key and shape is matched against the `torch_names` table before anything is assigned,
so a mismatch leaves the model unchanged and names each offending key. A tensor that is not
floating point (an int8 or bool tensor would be cast silently into a kernel) is refused like a
mismatch; one holding NaN or inf is refused unless `allow_nonfinite=True`.
"""

import dataclasses
import json
import logging
import os
import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from stica_jax.export.torch_names import (
    AUDIO_FILE,
    CONVERTERS,
    FORMAT,
    HEADS_FILE,
    MANIFEST_FILE,
    VIDEO_FILE,
    Entry,
    audio_resnet9_entries,
    fc_entries,
    heads_file_entries,
    prefixed,
    r2plus1d18_entries,
    require_torchvision_audio,
    require_torchvision_video,
    variable_at,
)
from stica_jax.export.weight_files import StateDictMismatchError, WeightFileError, read_state_dict
from stica_jax.models.audio_resnet import AudioResNet
from stica_jax.models.classifier import VideoClassifier
from stica_jax.models.stica import STiCA
from stica_jax.models.temporal_pooling import AvgPool
from stica_jax.models.video_resnet import VideoResNet

_log = logging.getLogger(__name__)


def _torch_shape(e: Entry, jax_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    if e.kind == "count":
        return ()
    return tuple(CONVERTERS[e.kind][0](*[np.empty(s, np.float32) for s in jax_shapes]).shape)


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
    entries: Sequence[Entry],
    state: dict[str, np.ndarray],
    *,
    source: str,
    target: str,
    plan: _Plan,
    allow_nonfinite: bool = False,
) -> None:
    """Match `state` against `entries` exactly (every key, every shape, a floating dtype, finite
    values unless `allow_nonfinite`) or raise by name."""
    expected = {e.torch_key: e for e in entries}
    missing = [k for k, e in expected.items() if k not in state and e.kind != "count"]
    unexpected = [k for k in state if k not in expected]
    mismatched, not_floating, nonfinite, pending = [], [], [], []
    for key, e in expected.items():
        if key not in state or e.kind == "count":
            continue  # num_batches_tracked is optional and unused (stica_jax has no counter)
        dtype = np.asarray(state[key]).dtype
        if not np.issubdtype(dtype, np.floating):
            not_floating.append(f"{key} {dtype}")
            continue
        bad = int(np.size(state[key]) - np.count_nonzero(np.isfinite(state[key])))
        if bad and not allow_nonfinite:
            nonfinite.append(f"{key} ({bad} of {np.size(state[key])})")
        variables = [variable_at(root, p) for p in e.jax_paths]
        shapes = [tuple(v.get_value().shape) for v in variables]
        want, got = _torch_shape(e, shapes), tuple(state[key].shape)
        if want != got:
            mismatched.append(f"{key} {list(got)} (expected {list(want)})")
            continue
        pending.extend(zip(variables, CONVERTERS[e.kind][1](np.asarray(state[key]), shapes)))
    if missing or unexpected or mismatched or not_floating:
        message = f"{source} does not match {target}:"
        if missing:
            message += _list_names("missing keys", missing)
        if unexpected:
            message += _list_names("unexpected keys", unexpected)
        if mismatched:
            message += _list_names("shape mismatches", mismatched)
        if not_floating:
            message += _list_names("not floating point", not_floating)
        if len(missing) > len(expected) // 2:
            message += (
                "\n  (most keys are missing: is this a state dict of another "
                "architecture, or does it need a `prefix`?)"
            )
        raise StateDictMismatchError(message)
    if nonfinite:
        raise WeightFileError(
            f"{source} holds non-finite values (NaN or inf):"
            + _list_names("tensors", nonfinite)
            + "\n  (pass allow_nonfinite=True to load them anyway)"
        )
    plan.assignments.extend(pending)


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
    path: str | os.PathLike,
    model: nnx.Module | None = None,
    *,
    prefix: str = "",
    allow_nonfinite: bool = False,
    log_dropped: bool = True,
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
      allow_nonfinite: load tensors holding NaN or inf (refused by default: `WeightFileError`).
      log_dropped: log a warning for a file's `fc` that the model has no place for (a caller
        that reports everything it left out in its own words passes False).
    Returns `model`. Missing/unexpected keys, shape mismatches and non-floating dtypes raise
    `StateDictMismatchError` naming them; the model is then left unchanged.
    """
    if model is not None and not isinstance(model, (VideoResNet, VideoClassifier, STiCA)):
        raise TypeError(f"cannot load r2plus1d_18 weights into a {type(model).__name__}")
    if model is not None:
        require_torchvision_video(_video_backbone(model))
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
        r2plus1d18_entries(backbone),
        state,
        source=str(path),
        target="torchvision r2plus1d_18",
        plan=plan,
        allow_nonfinite=allow_nonfinite,
    )
    if fc and fc_root is not None:
        try:
            _plan(
                fc_root,
                fc_entries(),
                fc,
                source=str(path),
                target="the model's fc",
                plan=plan,
                allow_nonfinite=allow_nonfinite,
            )
        except StateDictMismatchError as e:
            _log.warning("%s: fc not loaded, model.fc keeps its initialisation: %s", path, e)
    elif fc and log_dropped:
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
    path: str | os.PathLike,
    model: nnx.Module | None = None,
    *,
    prefix: str = "",
    allow_nonfinite: bool = False,
    log_dropped: bool = True,
) -> nnx.Module:
    """stica_jax weights from a torchvision `ResNet(BasicBlock, [1, 1, 1, 1])` state dict.

    `conv1` must have 1 input channel. `model`: an `AudioResNet` or a `STiCA` (its audio
    backbone), updated in place; None builds an `AudioResNet` in eval mode. A `fc` in the file
    is dropped and reported (logged, unless `log_dropped=False`: a caller that reports what it
    left out in its own words). Mismatches (keys, shapes, non-floating dtypes) raise
    `StateDictMismatchError` naming the keys; NaN or inf raise `WeightFileError` unless
    `allow_nonfinite`.
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
    require_torchvision_audio(backbone)
    state = read_state_dict(path, prefix=prefix)
    fc = [k for k in ("fc.weight", "fc.bias") if state.pop(k, None) is not None]
    if fc and log_dropped:
        _log.warning("%s: dropped %s (the audio backbone has no classifier)", path, ", ".join(fc))
    plan = _Plan()
    _plan(
        backbone,
        audio_resnet9_entries(backbone),
        state,
        source=str(path),
        target="torchvision ResNet(BasicBlock, [1, 1, 1, 1]) with a 1-channel conv1",
        plan=plan,
        allow_nonfinite=allow_nonfinite,
    )
    plan.apply()
    if created:
        _check_concrete(model)
        model.eval()
    return model


def import_model(
    export_dir: str | os.PathLike, model: nnx.Module, *, allow_nonfinite: bool = False
) -> nnx.Module:
    """Load an export directory (e.g. after fine-tuning in PyTorch) back into `model` in place.

    `model` must have the exported structure (a `STiCA` or `VideoClassifier`); every tensor of
    every file must match, or `StateDictMismatchError` names what does not. NaN or inf values
    raise `WeightFileError` unless `allow_nonfinite`.
    """
    d = pathlib.Path(export_dir)
    manifest = json.loads((d / MANIFEST_FILE).read_text())
    if manifest.get("format") != FORMAT:
        raise WeightFileError(f"{d / MANIFEST_FILE}: unknown format {manifest.get('format')!r}")
    if not isinstance(model, (STiCA, VideoClassifier)):
        raise TypeError(
            f"import_model takes a STiCA or VideoClassifier, got {type(model).__name__}"
        )
    require_torchvision_video(model.video_backbone)
    plan = _Plan()
    video_entries = prefixed(r2plus1d18_entries(model.video_backbone), "", ("video_backbone",))
    if isinstance(model, VideoClassifier) and isinstance(model.video_pooling, AvgPool):
        video_entries += fc_entries()
    _plan(
        model,
        video_entries,
        read_state_dict(d / VIDEO_FILE),
        source=str(d / VIDEO_FILE),
        target=f"the video backbone of the {type(model).__name__}",
        plan=plan,
        allow_nonfinite=allow_nonfinite,
    )
    if isinstance(model, STiCA):
        require_torchvision_audio(model.audio_backbone)
        _plan(
            model,
            prefixed(audio_resnet9_entries(model.audio_backbone), "", ("audio_backbone",)),
            read_state_dict(d / AUDIO_FILE),
            source=str(d / AUDIO_FILE),
            target="the audio backbone",
            plan=plan,
            allow_nonfinite=allow_nonfinite,
        )
    heads = heads_file_entries(model)
    if heads:
        _plan(
            model,
            heads,
            read_state_dict(d / HEADS_FILE),
            source=str(d / HEADS_FILE),
            target="the temporal pooling and heads",
            plan=plan,
            allow_nonfinite=allow_nonfinite,
        )
    plan.apply()
    return model
