"""Joining the hosts of a multi-host job into one JAX cluster."""

import os

import jax


def on_cloud_tpu_pod() -> bool:
    """True on a multi-host Cloud TPU slice, where `jax.distributed.initialize()` self-configures."""
    return "TPU_WORKER_HOSTNAMES" in os.environ and "," in os.environ["TPU_WORKER_HOSTNAMES"]


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """`jax.distributed.initialize` when running multi-host; a no-op on a single host.

    Explicit arguments (GPU clusters, local multi-process tests) take precedence; a Cloud TPU
    pod is detected from its environment; SLURM / Open MPI jobs are auto-detected by JAX when
    `coordinator_address` is "auto".
    """
    if coordinator_address is None and not on_cloud_tpu_pod():
        return
    # Cross-process collectives of the CPU backend (tests, CPU clusters); GPUs use NCCL and
    # TPUs their interconnect whatever this says.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator_address == "auto":
        jax.distributed.initialize()
    elif coordinator_address is not None:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    else:
        jax.distributed.initialize()
    # Printed, not logged: the one line that shows each host of a job found the others.
    print(
        f"joined the cluster as process {jax.process_index()} of {jax.process_count()}", flush=True
    )


def all_processes_agree(ok: bool) -> bool:
    """True when `ok` holds on every process of the job (one small all-gather when multi-host).

    Hosts that take a decision from their own view (a checkpoint restored, a lock taken) use it
    so that all of them act on the same answer instead of some going on while others stop.
    """
    if jax.process_count() == 1:
        return ok
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.asarray(ok, np.int32))))
