"""The train step compiled ahead of time for a TPU slice, on any machine (no TPU needed).

With libtpu installed (`pip install -e ".[tpu]"`), `jax.experimental.topologies` describes the
devices of a TPU slice that is not there: `topology_devices("v5e:4x4")` gives its 16 chips,
spread over the hosts of a real slice of that shape (4 of them: v5e hosts hold 4 chips in
multi-host slices), and a program lowered with shardings over them is compiled by XLA:TPU
exactly as on the slice. `compile_train_step` does that for the real train step
(`train.create_train_state`, `step.make_train_step`: the config's model, loss, optimizer and
`config.performance`), and `CompileReport` reads what a slice would run:

- memory per chip (`compiled.memory_analysis()`): the arguments (the replicated train state and
  the chip's share of the batch), the temporaries, and their total against the chip's HBM.
  A program that does not fit is refused by XLA:TPU itself (RESOURCE_EXHAUSTED), which
  `compile_train_step` raises as `DoesNotFit`, a one-line error;
- FLOPs and bytes accessed per chip and step (`compiled.cost_analysis()`), and the roofline
  bound they give with the chip's peak bf16 FLOP/s and HBM bandwidth (`CHIPS`): the step can
  not be faster than max(FLOPs / peak, bytes / bandwidth). XLA's own `optimal_seconds`
  estimate is not used (it comes out negative for this program);
- the collectives of the TPU program (`stica_jax.hlo`): count, bytes, and how many move at
  most 4 KiB (latency-bound, each costs a few microseconds whatever its size).

TPU v4 and v5p chips have two TensorCores that a pod shows as one device ("megacore"); the
topologies are described that way (`chip_config_name="megacore"`), as a real v4/v5p slice
appears to JAX.
"""

import contextlib
import dataclasses
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jax.experimental import topologies
from jax.sharding import NamedSharding, PartitionSpec as P

from data_pipeline.errors import UserError, first_line
from stica_jax import hlo, shapes, step as step_lib, train
from stica_jax.tpu_chips import (
    CHIPS,
    GIB,
    Chip,
    TopologyError,
    parse_chips_per_host,
    parse_topology,
)


class DoesNotFit(UserError):
    """XLA:TPU refused the program: it needs more memory than a chip has."""


def topology_devices(topology: str, chips_per_host: str | None = None) -> list[jax.Device]:
    """The compile-only devices of a TPU slice (one per chip), with the process of each.

    `chips_per_host` ("2x2", "1x2x1"...) sets the chips of one host; by default libtpu's layout
    for the generation (4 chips per host of a multi-host v5e/v6e slice, 4 of a v4/v5p one)."""
    generation, _ = parse_topology(topology)
    kwargs: dict[str, Any] = {}
    if CHIPS[generation].megacore:
        kwargs["chip_config_name"] = "megacore"
    if chips_per_host:
        kwargs["chips_per_host_bounds"] = parse_chips_per_host(chips_per_host)
    # libtpu takes /tmp/libtpu_lockfile for the process that owns a machine's TPU chips; a
    # compile-only topology owns none, so a check must not stop at the lock of a second check or
    # of a training run on the same machine (ABORTED: "... libtpu multi-process lockfile").
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        with _libtpu_start_up_unprinted():
            description = topologies.get_topology_desc(
                platform="tpu", topology_name=topology, **kwargs
            )
    except jax.errors.JaxRuntimeError as error:
        raise TopologyError(f"--topology={topology}: {first_line(error)}") from None
    return list(description.devices)


@contextlib.contextmanager
def _libtpu_start_up_unprinted():
    """libtpu's start-up lines on a machine without a TPU, not printed: loading it there writes
    "could not determine TPU accelerator type / worker hostnames" and an INVALID_ARGUMENT trace
    to the process's stderr from C++, and the compile-only topology needs neither. (An error
    that stops the check is reported in one line by the caller.)"""
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # no metadata server to ask
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@dataclasses.dataclass
class CompileReport:
    topology: str
    chip: Chip
    chips: int
    hosts: int
    batch_per_chip: int
    compile_seconds: float
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    code_bytes: int
    flops: float  # per chip and step
    bytes_accessed: float  # per chip and step
    collectives: dict[str, dict[str, int]]

    @property
    def total_bytes(self) -> int:
        """What the chip holds while the step runs: arguments, outputs not written over donated
        arguments, temporaries and the program."""
        return (
            self.argument_bytes
            + self.output_bytes
            - self.alias_bytes
            + self.temp_bytes
            + self.code_bytes
        )

    @property
    def compute_seconds(self) -> float:
        return self.flops / self.chip.peak_bf16_flops

    @property
    def memory_seconds(self) -> float:
        return self.bytes_accessed / self.chip.hbm_bytes_per_s

    @property
    def roofline_seconds(self) -> float:
        """The fastest the step can run on this chip: bound by FLOPs or by HBM traffic."""
        return max(self.compute_seconds, self.memory_seconds)

    def asdict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["chip"] = self.chip.name
        out.update(
            total_bytes=self.total_bytes,
            hbm_bytes=self.chip.hbm_bytes,
            compute_seconds=self.compute_seconds,
            memory_seconds=self.memory_seconds,
            roofline_seconds=self.roofline_seconds,
        )
        return out


def lower_train_step(
    config: ml_collections.ConfigDict, devices: list[jax.Device], batch_per_device: int
) -> Any:
    """The train step of `config` lowered from shapes for a mesh over `devices` (nothing is
    allocated): the state replicated, the batch split over the `data` axis, as in training."""
    mesh = step_lib.make_mesh(devices)
    model, optimizer, state = train.create_train_state(
        config, num_examples=config.get("num_train_examples") or 1, abstract=True
    )
    replicated = NamedSharding(mesh, P())
    batch_sharding = step_lib.batch_sharding(mesh)
    state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state
    )
    batch = {
        name: jax.ShapeDtypeStruct(shape, jnp.dtype(dtype), sharding=batch_sharding)
        for name, (shape, dtype) in shapes.train_batch_shapes(
            config, batch_per_device * len(devices)
        ).items()
    }
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)
    train_step = step_lib.make_train_step(
        nnx.graphdef(model),
        optimizer,
        step_lib.loss_config_for(config),
        mesh,
        per_device_batch_norm=config.performance.bn_sync == "device",
        sum_grads_once=config.performance.sum_grads_once,
    )
    return train_step.lower(state, batch, key)


def compile_train_step(
    config: ml_collections.ConfigDict,
    topology: str,
    devices: list[jax.Device],
    batch_per_device: int,
) -> tuple[CompileReport, str]:
    """(report, optimised TPU program text) of `config`'s train step compiled for `devices`,
    the chips of `topology` (`topology_devices`), at `batch_per_device` clips per chip. Raises
    `DoesNotFit` when XLA:TPU finds the program too large for the chip's HBM."""
    generation, _ = parse_topology(topology)
    lowered = lower_train_step(config, devices, batch_per_device)
    start = time.perf_counter()
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as error:
        if "RESOURCE_EXHAUSTED" in str(error):
            raise DoesNotFit(
                f"{topology} at {batch_per_device} clips per chip does not fit: "
                f"{first_line(error).removeprefix('RESOURCE_EXHAUSTED: ')}"
            ) from None
        raise
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    text = compiled.as_text()
    report = CompileReport(
        topology=topology,
        chip=CHIPS[generation],
        chips=len(devices),
        hosts=len({d.process_index for d in devices}),
        batch_per_chip=batch_per_device,
        compile_seconds=seconds,
        argument_bytes=memory.argument_size_in_bytes,
        output_bytes=memory.output_size_in_bytes,
        alias_bytes=memory.alias_size_in_bytes,
        temp_bytes=memory.temp_size_in_bytes,
        code_bytes=memory.generated_code_size_in_bytes,
        flops=float(cost.get("flops", 0.0)),
        bytes_accessed=float(cost.get("bytes accessed", 0.0)),
        collectives=hlo.stats(text)["collectives"],
    )
    return report, text


def format_report(r: CompileReport) -> str:
    """What a person reads: memory, work, the roofline bound and the collectives, per chip."""
    gib = lambda n: f"{n / GIB:.2f} GiB"  # noqa: E731
    fit = "fits" if r.total_bytes <= r.chip.hbm_bytes else "DOES NOT FIT"
    lines = [
        f"{r.topology}: {r.chips} chips ({r.chip.name}) on {r.hosts} host(s), "
        f"{r.batch_per_chip} clips per chip ({r.batch_per_chip * r.chips} per step); "
        f"compiled in {r.compile_seconds:.0f} s",
        f"memory per chip: arguments {gib(r.argument_bytes)}, temporaries {gib(r.temp_bytes)}, "
        f"outputs {gib(r.output_bytes - r.alias_bytes)} beyond the donated state, "
        f"program {gib(r.code_bytes)}; total {gib(r.total_bytes)} of {gib(r.chip.hbm_bytes)} "
        f"HBM: {fit}",
        f"work per chip and step: {r.flops / 1e12:.2f} TFLOP, {r.bytes_accessed / 1e9:.1f} GB "
        f"accessed ({r.bytes_accessed / 1e9 / r.batch_per_chip:.1f} GB per clip)",
        f"roofline bound: {r.roofline_seconds * 1e3:.1f} ms per step "
        f"(compute {r.compute_seconds * 1e3:.1f} ms at {r.chip.peak_bf16_flops / 1e12:.0f} "
        f"TFLOP/s bf16, HBM {r.memory_seconds * 1e3:.1f} ms at "
        f"{r.chip.hbm_bytes_per_s / 1e9:.0f} GB/s; {r.chip.source}), "
        f"{r.batch_per_chip * r.chips / r.roofline_seconds:.0f} clips/s at best",
    ]
    if not r.collectives:
        lines.append("collectives: none")
    for name, c in sorted(r.collectives.items()):
        lines.append(
            f"{name}: {c['count']}, {c['bytes'] / 2**20:.1f} MiB per step, "
            f"{c['small']} of them <= {hlo.SMALL_BYTES} B"
        )
    return "\n".join(lines)
