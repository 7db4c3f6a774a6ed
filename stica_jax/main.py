"""`python -m stica_jax.main --config=configs/sota.py --workdir=DIR`: STiCA pretraining.

On a Cloud TPU pod (auto-detected) or when --coordinator_address/--num_processes/--process_id
are given, `jax.distributed.initialize` joins all hosts into one mesh first. One run per workdir
(a second one refuses, naming the first); a restart keeps the architecture and data of the
workdir's `config.json` unless `--config_change=allow`. Errors the user can
fix (a flag, a config value, a dataset to prepare) are one line on stderr with exit status 2;
`--verbosity=0` shows the INFO logs of every library (`stica_jax.cli`).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from stica_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, TensorBoard and config go here.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Hosts in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This host's index.")
_CONFIG_CHANGE = flags.DEFINE_enum(
    "config_change",
    "refuse",
    ["refuse", "allow"],
    "A restart whose architecture or data fields differ from the workdir's config.json: "
    "'refuse' (the default) stops with the differences; 'allow' trains on with the new values.",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Late: a usage error (a flag, a missing config) is reported before JAX and the model code
    # load, in a fraction of a second instead of seconds.
    import jax

    from stica_jax import distributed

    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    # A value that cannot run stops here, before TensorFlow and the trainer load (seconds
    # sooner); `train.train_and_evaluate` checks it again for callers of the library.
    from stica_jax import config_checks

    config_checks.validate_config(
        _CONFIG.value.copy_and_resolve_references(),
        num_devices=jax.device_count(),
        num_processes=jax.process_count(),
    )
    from data_pipeline import tensorflow_cpu  # noqa: F401 - hides GPUs from TensorFlow first.

    # Late: train loads TensorFlow (clu, tf.data): after `cli.run` quieted the console and
    # `tensorflow_cpu` hid the GPUs from it.
    from stica_jax import train

    logging.info(
        "JAX process %d/%d, %d local devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
    )
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, config_change=_CONFIG_CHANGE.value)


if __name__ == "__main__":
    cli.run(main)
