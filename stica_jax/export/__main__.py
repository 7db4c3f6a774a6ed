"""`python -m stica_jax.export (--workdir=DIR [--step=N] | --config=FILE [--seed=S]) --out=DIR`:
a training checkpoint, or a freshly initialised model, as torchvision-compatible safetensors
(`stica_jax.export.torch`, docs/export.md).

A slim (demo-size) model, which has no torchvision counterpart, or a workdir that is not a
training run's is a one-line error with exit status 2 (`stica_jax.cli`).
"""

import os

from absl import app, flags
from ml_collections import config_flags

from data_pipeline.errors import UserError
from stica_jax import cli
from stica_jax.export.to_torch import export_from_config, export_from_workdir
from stica_jax.export.torch_names import MANIFEST_FILE, UnsupportedArchitectureError

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir whose checkpoint to export.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file: export a freshly initialised model instead.", lock_config=True
)
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_SEED = flags.DEFINE_integer("seed", 0, "Initialisation seed with --config.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if (_WORKDIR.value is None) == (_CONFIG.value is None):
        raise app.UsageError("give exactly one of --workdir or --config")
    try:
        if _WORKDIR.value is not None:
            manifest = export_from_workdir(_WORKDIR.value, _OUT.value, _STEP.value)
        else:
            manifest = export_from_config(_CONFIG.value, _OUT.value, _SEED.value)
    except (UnsupportedArchitectureError, FileNotFoundError) as error:
        # A slim (demo-size) model, or a workdir that is not one: the user's to change.
        raise UserError(str(error)) from None
    for name, tensors in manifest["files"].items():
        print(f"{os.path.join(_OUT.value, name)}: {len(tensors)} tensors")
    print(f"{os.path.join(_OUT.value, MANIFEST_FILE)}: step {manifest['step']}")


if __name__ == "__main__":
    cli.run(main)
