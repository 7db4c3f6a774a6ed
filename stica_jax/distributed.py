"""Joining the hosts of a multi-host job into one JAX cluster."""

import os

import jax
import numpy as np
from jax._src.distributed import global_state
from jax.experimental import multihost_utils


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
    return bool(np.all(_gather_flags(ok)))


# Where `first_failure` leaves a failing process's message in the coordination service's store.
_FAILURE_KEY = "stica_jax/{topic}/failure/{process}"
# A failing process writes its message before it joins the all-gather that tells the others, so
# the message is there when they read it; the wait only guards against a broken service.
_READ_TIMEOUT_MS = 60_000


def first_failure(message: str | None, *, topic: str) -> tuple[int, str] | None:
    """(process, message) of the lowest-numbered process whose `message` is not None, the same
    on every process; None when no process failed. Every process must call it at the same point.

    Multi-host, the processes agree through one small all-gather of a failed flag per process
    (`all_processes_agree`'s). The messages travel through the key-value store of JAX's
    coordination service (the one `jax.distributed.initialize` started, as orbax's barriers do)
    and only when a process failed, so the common case costs the flag alone. Single-host it is
    `message` itself, with no collective.
    """
    if jax.process_count() == 1:
        return None if message is None else (0, message)
    me = jax.process_index()
    if message is not None:
        key = _FAILURE_KEY.format(topic=topic, process=me)
        global_state.client.key_value_set(key, message, allow_overwrite=True)
    failed = np.flatnonzero(_gather_flags(message is not None))
    if not len(failed):
        return None
    first = int(failed[0])
    if first == me:
        return first, message
    key = _FAILURE_KEY.format(topic=topic, process=first)
    return first, global_state.client.blocking_key_value_get(key, _READ_TIMEOUT_MS)


def _gather_flags(flag: bool) -> np.ndarray:
    """`flag` of every process, in process order (an all-gather of one int32 per process)."""
    return multihost_utils.process_allgather(np.asarray(flag, np.int32))
