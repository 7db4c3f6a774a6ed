"""`python -m stica_jax.ablate --config=configs/demo.py --workdir=DIR [--variants=…] [--seeds=2]`.

Trains the config as given (the baseline) and each variant of it, `--seeds` times each (seeds
0…n-1), through `train.train_and_evaluate`, each run in its own `DIR/<variant>/seed<k>`, and
prints the online probe's top-1 per modality as mean ± std over seeds beside the baseline
(`stica_jax.ablation`). Every `--config.*` override applies to the baseline and so to every
variant alike (e.g. a shorter `--config.num_epochs` to fit a budget). A finished run leaves
`result.json` and is not trained again, so an interrupted ablation resumes where it stopped (an
unfinished run resumes from its checkpoint). The table is also written to `DIR/table.txt`.
Errors a user can fix (a flag, an unknown variant, a config value, a dataset to prepare) are one
line on stderr with exit status 2, checked before any training (`stica_jax.cli`).

The variants are the paper's ablations (seed §6; the abstract: feature crops and transformer
pooling each help) and the two places where the official code departs from the spec's earlier
wording (spec §6: crop pairs, detached keys); `docs/ablations.md` holds a measured table.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from stica_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Baseline config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "One subdirectory per variant and seed.")
_VARIANTS = flags.DEFINE_list(
    "variants", None, "Comma-separated variants (default: the five ablations of the baseline)."
)
_SEEDS = flags.DEFINE_integer("seeds", 2, "Trainings per variant, with config.seed 0…n-1.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    baseline = _CONFIG.value
    if baseline is None or _WORKDIR.value is None:
        raise app.UsageError("--config and --workdir are required")
    # Late: a usage error is reported before JAX loads, and a plan that cannot run before
    # TensorFlow and the trainer do (`ablation` imports neither); before anything imports
    # TensorFlow (the trainer does, through its libraries), the GPUs are hidden from it.
    import jax

    from stica_jax import ablation

    configs = ablation.plan(baseline, _VARIANTS.value, _SEEDS.value)
    from data_pipeline import tensorflow_cpu  # noqa: F401

    if jax.config.jax_compilation_cache_dir is None:
        # The seeds of a variant compile the same programs: compile them once.
        jax.config.update("jax_compilation_cache_dir", os.path.join(_WORKDIR.value, "jax_cache"))
    # A dataset that is not prepared, a run that diverges: `UserError`s, one line from cli.run.
    print(ablation.ablate(configs, _WORKDIR.value, _SEEDS.value), flush=True)


if __name__ == "__main__":
    cli.run(main)
