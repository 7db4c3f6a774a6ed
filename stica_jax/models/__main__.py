"""`python -m stica_jax.models --config=configs/sota.py`: print the model summary (parameters
per module, map shapes, multiply-adds per clip) from an abstract trace: nothing is computed
(`stica_jax.models.summary`). User errors are one line with exit status 2 (`stica_jax.cli`).
"""

from absl import app, flags
from ml_collections import config_flags

from stica_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Late: a usage error (a flag, a missing config) is reported before JAX and the model code
    # load, in a fraction of a second instead of seconds.
    from stica_jax.models.summary import format_summary, summarize

    print(format_summary(summarize(_CONFIG.value)))


if __name__ == "__main__":
    cli.run(main)
