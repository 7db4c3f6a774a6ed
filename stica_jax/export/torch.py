"""PyTorch interop: export stica_jax models as torchvision-compatible safetensors, and import back.

`export_model` (or `python -m stica_jax.export --workdir=DIR --out=DIR`, or
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

This module is the public face of the parts, one job each:

- `torch_names`: the table of names, stica_jax variable ↔ torchvision tensor, and the layout
  conversions (read by both directions);
- `to_torch`: export, JAX → files (`export_model`, the manifest; `export_from_workdir`,
  `export_from_config`);
- `weight_files`: reading safetensors / `.pth` state dicts safely (`read_state_dict`);
- `from_torch`: import, files → JAX (`load_torchvision_*`, `import_model`);
- `torch_modules`: the PyTorch rebuild of an export (needs torch; not imported here).
"""

from stica_jax.export.from_torch import (
    import_model,
    load_torchvision_audio_resnet9,
    load_torchvision_r2plus1d18,
)
from stica_jax.export.to_torch import (
    LOG_MEL_OFFSET,
    VIDEO_MEAN,
    VIDEO_STD,
    export_from_config,
    export_from_workdir,
    export_model,
)
from stica_jax.export.torch_names import (
    AUDIO_FILE,
    FORMAT,
    HEADS_FILE,
    MANIFEST_FILE,
    R2PLUS1D_18_DEPTHS,
    TORCHVISION_WIDTHS,
    VIDEO_FILE,
    UnsupportedArchitectureError,
)
from stica_jax.export.weight_files import StateDictMismatchError, WeightFileError, read_state_dict

# The models these functions take, importable from here as they always were.
from stica_jax.models.audio_resnet import AudioResNet
from stica_jax.models.classifier import VideoClassifier
from stica_jax.models.stica import STiCA
from stica_jax.models.video_resnet import VideoResNet

__all__ = [
    "AUDIO_FILE",
    "FORMAT",
    "HEADS_FILE",
    "LOG_MEL_OFFSET",
    "MANIFEST_FILE",
    "R2PLUS1D_18_DEPTHS",
    "TORCHVISION_WIDTHS",
    "VIDEO_FILE",
    "VIDEO_MEAN",
    "VIDEO_STD",
    "AudioResNet",
    "STiCA",
    "StateDictMismatchError",
    "UnsupportedArchitectureError",
    "VideoClassifier",
    "VideoResNet",
    "WeightFileError",
    "export_from_config",
    "export_from_workdir",
    "export_model",
    "import_model",
    "load_torchvision_audio_resnet9",
    "load_torchvision_r2plus1d18",
    "read_state_dict",
]

if __name__ == "__main__":  # the former spelling of `python -m stica_jax.export`
    from stica_jax import cli
    from stica_jax.export import __main__ as command

    cli.run(command.main)
