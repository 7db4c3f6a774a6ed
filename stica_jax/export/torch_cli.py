"""The command line: `python -m stica_jax.export.torch (--workdir=DIR [--step=N] | --config=FILE
[--seed=S]) --out=DIR` exports a training checkpoint, or a freshly initialised model.
"""

import os
from typing import Any

from flax import nnx

from stica_jax.export.to_torch import export_model
from stica_jax.export.torch_names import MANIFEST_FILE


def export_from_workdir(workdir: str, out_dir: str, step: int | None = None) -> dict[str, Any]:
    """Export the checkpoint of `workdir` at `step` (None: the latest)."""
    # Late: restoring imports the trainer, and with it TensorFlow (see `stica_jax.restore`),
    # which `tensorflow_cpu` loads first: no GPU for TensorFlow, no start-up lines.
    from data_pipeline import tensorflow_cpu  # noqa: F401
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


def main() -> None:
    """Parse the flags and export (`stica_jax.cli.run`: a user error is one line, exit 2)."""
    from absl import app, flags
    from ml_collections import config_flags

    from data_pipeline.errors import UserError
    from stica_jax import cli
    from stica_jax.export.torch_names import UnsupportedArchitectureError

    workdir = flags.DEFINE_string("workdir", None, "Training workdir whose checkpoint to export.")
    step = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
    config = config_flags.DEFINE_config_file(
        "config", None, "Config file: export a freshly initialised model instead.", lock_config=True
    )
    out = flags.DEFINE_string("out", None, "Output directory.", required=True)
    seed = flags.DEFINE_integer("seed", 0, "Initialisation seed with --config.")

    def run(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}")
        if (workdir.value is None) == (config.value is None):
            raise app.UsageError("give exactly one of --workdir or --config")
        try:
            if workdir.value is not None:
                manifest = export_from_workdir(workdir.value, out.value, step.value)
            else:
                manifest = export_from_config(config.value, out.value, seed.value)
        except (UnsupportedArchitectureError, FileNotFoundError) as error:
            # A slim (demo-size) model, or a workdir that is not one: the user's to change.
            raise UserError(str(error)) from None
        for name, tensors in manifest["files"].items():
            print(f"{os.path.join(out.value, name)}: {len(tensors)} tensors")
        print(f"{os.path.join(out.value, MANIFEST_FILE)}: step {manifest['step']}")

    cli.run(run)
