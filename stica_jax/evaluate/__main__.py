"""`python -m stica_jax.evaluate --config=configs/eval/<protocol>.py --config.init.workdir=DIR
--workdir=EVAL_DIR`: the paper's downstream protocols (docs/evaluation.md).

`config.protocol` picks fine-tuning, the linear probe or audio classification
(`stica_jax.evaluate.run`); `--config.init.workdir`, `--config.init.torch` or
`--config.init.random=True` the model (`stica_jax.evaluate.init`). Multi-host flags as
`stica_jax.main`: on a Cloud TPU pod (auto-detected) or with --coordinator_address /
--num_processes / --process_id, `jax.distributed.initialize` joins the hosts first. User errors
are one line with exit status 2 (`stica_jax.cli`).
"""

from absl import app, flags
from ml_collections import config_flags

from stica_jax import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Evaluation config (configs/eval/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Per-fold checkpoints, metrics and results.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Hosts in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This host's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Late: a usage error (a flag, a missing config) is reported before JAX and the model code
    # load, in a fraction of a second instead of seconds.
    from stica_jax import distributed

    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    # A config without exactly one model stops here, before torch and TensorFlow load.
    from stica_jax.evaluate import init

    init.init_kind(_CONFIG.value.init)
    if _CONFIG.value.init.get("torch"):
        try:  # a PyTorch file may need torch, which must come before TensorFlow (triton)
            import torch  # noqa: F401
        except ImportError:
            pass
    from data_pipeline import tensorflow_cpu  # noqa: F401 - hides GPUs from TensorFlow first.
    from stica_jax.evaluate import run

    run.evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
