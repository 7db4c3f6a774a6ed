"""`python -m stica_jax.compile_check --config=configs/sota.py --topology=v5e:4x4`: the train
step compiled for a TPU slice on this machine, before anyone rents the slice.

XLA:TPU compiles the real step (the config's model, loss, optimizer and `config.performance`)
for the chips of `--topology`, spread over its hosts as on a real slice (`--chips_per_host`
changes how many each host holds), with `--batch_per_device` clips per chip (default: the
config's global batch over the slice's chips). It prints per-chip memory against the chip's
HBM, the compile time, FLOPs and bytes accessed per step, the roofline step-time bound they
give, and the program's collectives (`stica_jax.aot`). Needs libtpu (`pip install -e
".[tpu]"`), not a TPU. A step that does not fit a chip, an unknown topology or a batch that
does not divide is one line on stderr with exit status 2; `--json=PATH` writes the numbers,
`--hlo_out=PATH` the optimised TPU program.
"""

import importlib.util
import json

from absl import app, flags
from ml_collections import config_flags

from stica_jax import cli, tpu_chips
from stica_jax.errors import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
_TOPOLOGY = flags.DEFINE_string("topology", None, "TPU slice, e.g. v5e:4x4, v6e:2x2, v5p:2x2x2.")
_BATCH = flags.DEFINE_integer(
    "batch_per_device", None, "Clips per chip (default: the config's global batch / chips)."
)
_CHIPS_PER_HOST = flags.DEFINE_string(
    "chips_per_host", None, "Chips of one host, e.g. 2x2 (default: libtpu's for the generation)."
)
_JSON = flags.DEFINE_string("json", None, "Write the numbers here as JSON.")
_HLO_OUT = flags.DEFINE_string("hlo_out", None, "Write the optimised TPU program here.")
flags.mark_flags_as_required(["config", "topology"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if importlib.util.find_spec("libtpu") is None:
        raise ConfigError('libtpu is not installed: pip install -e ".[tpu]" (no TPU is needed)')
    tpu_chips.parse_topology(_TOPOLOGY.value)
    if _CHIPS_PER_HOST.value:
        tpu_chips.parse_chips_per_host(_CHIPS_PER_HOST.value)
    # Late: a usage error is reported before JAX and the model code load.
    from stica_jax import aot

    devices = aot.topology_devices(_TOPOLOGY.value, _CHIPS_PER_HOST.value)
    config = _CONFIG.value
    batch = _BATCH.value
    if batch is None:
        if config.global_batch_size % len(devices):
            raise ConfigError(
                f"global_batch_size={config.global_batch_size} does not divide over the "
                f"{len(devices)} chips of {_TOPOLOGY.value}; give --batch_per_device"
            )
        batch = config.global_batch_size // len(devices)
    if batch < 1:
        raise ConfigError(f"--batch_per_device={batch} must be at least 1")
    report, text = aot.compile_train_step(config, _TOPOLOGY.value, devices, batch)
    print(aot.format_report(report))
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(report.asdict(), f, indent=1)
    if _HLO_OUT.value:
        with open(_HLO_OUT.value, "w") as f:
            f.write(text)


if __name__ == "__main__":
    cli.run(main)
