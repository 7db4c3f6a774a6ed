"""`python -m stica_jax.models --config=configs/sota.py`: print the model summary."""

from absl import app
from ml_collections import config_flags

from stica_jax.models.summary import format_summary, summarize

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)


def main(argv):
    del argv
    print(format_summary(summarize(_CONFIG.value)))


if __name__ == "__main__":
    app.run(main)
