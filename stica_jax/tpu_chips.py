"""TPU chips and slice names, for the ahead-of-time compile check (`stica_jax.aot`).

Imports neither JAX nor libtpu: a command checks `--topology` before either loads.
"""

import dataclasses
import re

from data_pipeline.errors import UserError

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Chip:
    """What bounds one TPU chip's step: its peak bf16 matrix throughput, HBM size and bandwidth.

    Numbers from the chip's Cloud TPU system-architecture page (`source`)."""

    name: str
    peak_bf16_flops: float  # FLOP/s per chip
    hbm_bytes: int
    hbm_bytes_per_s: float
    megacore: bool  # two TensorCores shown as one device
    source: str


CHIPS = {
    "v4": Chip("TPU v4", 275e12, 32 * GIB, 1200e9, True, "https://cloud.google.com/tpu/docs/v4"),
    "v5e": Chip("TPU v5e", 197e12, 16 * GIB, 819e9, False, "https://cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("TPU v5p", 459e12, 95 * GIB, 2765e9, True, "https://cloud.google.com/tpu/docs/v5p"),
    "v6e": Chip(
        "TPU v6e", 918e12, 32 * GIB, 1638e9, False, "https://cloud.google.com/tpu/docs/v6e"
    ),
}


class TopologyError(UserError):
    """A topology or host shape that names no TPU slice this check knows."""


def parse_topology(topology: str) -> tuple[str, tuple[int, ...]]:
    """The generation and chip grid of a slice name: `v5e:4x4` → ("v5e", (4, 4)).

    A TopologyError names what is wrong."""
    match = re.fullmatch(r"(v\d+\w*):(\d+(?:x\d+){1,2})", topology)
    if not match:
        raise TopologyError(
            f"--topology={topology}: expected GENERATION:SHAPE, e.g. v5e:4x4 or v5p:2x2x2"
        )
    generation, shape = match.group(1), tuple(int(d) for d in match.group(2).split("x"))
    if generation not in CHIPS:
        raise TopologyError(
            f"--topology={topology}: unknown TPU generation {generation!r}; "
            f"expected one of {', '.join(CHIPS)}"
        )
    return generation, shape


def parse_chips_per_host(chips_per_host: str) -> tuple[int, int, int]:
    """The chips of one host as a 3-d box: "2x2" → (2, 2, 1), "1x2x1" → (1, 2, 1)."""
    if not re.fullmatch(r"[1-9]\d*(x[1-9]\d*){1,2}", chips_per_host):
        raise TopologyError(f"--chips_per_host={chips_per_host}: expected e.g. 2x2 or 1x2x1")
    bounds = [int(d) for d in chips_per_host.split("x")]
    return tuple(bounds + [1] * (3 - len(bounds)))
