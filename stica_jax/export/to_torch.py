"""Export (JAX → files): a `STiCA` or `VideoClassifier` as torchvision-compatible safetensors.

`export_model` writes the files and the `manifest.json` described in `docs/export.md`; the
tensor names and layouts come from `torch_names`. `export_from_workdir` exports a training
checkpoint, `export_from_config` a freshly initialised model (`python -m stica_jax.export`).
Needs no torch.
"""

import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import save

from data_pipeline import atomic_file
from stica_jax import restore
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
from stica_jax.models import build_train_model
from stica_jax.models.classifier import VideoClassifier
from stica_jax.models.heads import ProjectionHead
from stica_jax.models.stica import STiCA
from stica_jax.models.temporal_pooling import AvgPool

# Input conventions written into the manifest. They mirror data_pipeline.augment.VIDEO_MEAN/STD
# and the defaults of data_pipeline.audio_features.log_mel_spectrogram ("stica" front end) and
# official_log_filterbank ("official"), which a test checks; importing those modules here would
# pull in TensorFlow.
VIDEO_MEAN = 0.45
VIDEO_STD = 0.225
LOG_MEL_OFFSET = 1e-6
OFFICIAL_PREEMPHASIS = 0.97
OFFICIAL_SAMPLE_SCALE = 32768.0  # float samples in [-1, 1] back to int16 units

# What the audio network was trained on, per `config.input.audio_frontend` (spec §7).
AUDIO_FEATURES = {
    "stica": {
        "feature": "log(mel_power + log_offset): |STFT|^2 with a periodic Hann window, "
        "no end padding, HTK mel filterbank from 0 Hz to Nyquist (tf.signal)",
        "log_offset": LOG_MEL_OFFSET,
    },
    "official": {
        "feature": "python_speech_features.logfbank(samples * sample_scale, sample_rate, "
        "winlen=window_length / sample_rate, winstep=hop_length / sample_rate, "
        "nfilt=num_mel_bins, nfft=fft_length, preemph=preemphasis).T, as the official "
        "datasets/audio_utils.py calls it: pre-emphasis, rectangular frames with the end "
        "zero-padded to a whole frame, |rfft|^2 / nfft, floor-binned mel filterbank, log "
        "with empty bands at float64 eps",
        "sample_scale": OFFICIAL_SAMPLE_SCALE,
        "preemphasis": OFFICIAL_PREEMPHASIS,
    },
}


def _to_torch_arrays(
    root: nnx.Module, entries: Sequence[Entry], step: int
) -> dict[str, np.ndarray]:
    out = {}
    for e in entries:
        if e.kind == "count":  # torch's BatchNorm update counter; only used with momentum=None
            out[e.torch_key] = np.array(step, np.int64)
            continue
        arrays = [np.asarray(jax.device_get(variable_at(root, p).get_value())) for p in e.jax_paths]
        out[e.torch_key] = np.ascontiguousarray(CONVERTERS[e.kind][0](*arrays))
    return out


def _save(path: pathlib.Path, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    # Not safetensors' `save_file`, whose files are 0600: colleagues must be able to read them.
    atomic_file.write_bytes(path, save(tensors, metadata={"format": "pt", "producer": "stica_jax"}))
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()}


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
    # Configs from before the switch have no field: their only front end was "stica".
    frontend = inp.get("audio_frontend", "stica") if inp else None
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
            "frontend": frontend,
            **AUDIO_FEATURES.get(frontend, {}),
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
    require_torchvision_video(model.video_backbone)
    is_stica = isinstance(model, STiCA)
    if is_stica:
        require_torchvision_audio(model.audio_backbone)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    video_entries = prefixed(r2plus1d18_entries(model.video_backbone), "", ("video_backbone",))
    fc_in_video = not is_stica and isinstance(model.video_pooling, AvgPool)
    if fc_in_video:
        video_entries += fc_entries()
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
        audio_entries = prefixed(
            audio_resnet9_entries(model.audio_backbone), "", ("audio_backbone",)
        )
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
    heads_entries = heads_file_entries(model)
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
    atomic_file.write_text(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


def export_from_workdir(workdir: str, out_dir: str, step: int | None = None) -> dict[str, Any]:
    """Export the checkpoint of `workdir` at `step` (None: the latest)."""
    config, model, restored_step = restore.restore_model(workdir, step)
    return export_model(model, config, out_dir, step=restored_step)


def export_from_config(config: Any, out_dir: str, seed: int = 0) -> dict[str, Any]:
    """Export a freshly initialised model of `config` (to check a PyTorch setup): a STiCA, or
    a `VideoClassifier` for a `mode="supervised"` config."""
    model = build_train_model(config, rngs=nnx.Rngs(seed))
    model.eval()
    return export_model(model, config, out_dir, step=0)
