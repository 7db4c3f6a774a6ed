"""Pieces of a training loop shared by pretraining (`stica_jax.train`) and the evaluation
protocols that train (`stica_jax.evaluate.finetune`): this host's share of each global batch,
the `metrics.jsonl` record, and durations for the progress line.

It imports no TensorFlow: the input pipeline is passed in as a function.
"""

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from stica_jax.errors import ConfigError


class ShardBatches:
    """This host's rows of each global batch, read as `num_shards` fixed data shards.

    Shard s yields rows `[s·B/S, (s+1)·B/S)` of every global batch, so the global batches (and
    the per-sample randomness, keyed by the global index) do not depend on how many hosts
    share the work: 2 hosts × 1 shard each read exactly what 1 host × 2 shards reads.
    """

    def __init__(self, shards: list):
        self.shards = shards

    def __next__(self) -> dict[str, np.ndarray]:
        parts = [next(s) for s in self.shards]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    @property
    def skipped_records(self) -> int:
        return sum(s.skipped_records for s in self.shards)


def shard_batches(
    make_dataset: Callable[..., Any],
    input_config: Any,
    *,
    split: str,
    dataset: Any,
    global_batch_size: int,
    seed: int,
    start_step: int,
    input_shards: int = 0,
) -> ShardBatches:
    """This host's training batches: `input_shards` data shards (0 = one per host), each a
    `make_dataset(input_config, split=, dataset=, batch_size_per_host=, seed=, process_index=,
    process_count=, start_step=)` pipeline (`data_pipeline.pipeline.make_*_dataset`)."""
    num_shards = input_shards or jax.process_count()
    if num_shards % jax.process_count() or global_batch_size % num_shards:
        raise ConfigError(
            f"input_shards={num_shards} must be a multiple of the "
            f"{jax.process_count()} hosts and divide global_batch_size"
        )
    per_host = num_shards // jax.process_count()
    first = jax.process_index() * per_host
    return ShardBatches(
        [
            make_dataset(
                input_config,
                split=split,
                dataset=dataset,
                batch_size_per_host=global_batch_size // num_shards,
                seed=seed,
                process_index=shard,
                process_count=num_shards,
                start_step=start_step,
            )
            for shard in range(first, first + per_host)
        ]
    )


METRICS_FILE = "metrics.jsonl"


def append_metrics(workdir: str, step: int, scalars: Mapping[str, float]) -> None:
    """One line `{"step": step, **scalars}` at the end of `workdir/metrics.jsonl` (process 0)."""
    if jax.process_index() == 0:
        with open(os.path.join(workdir, METRICS_FILE), "a") as file:
            file.write(json.dumps({"step": step, **scalars}) + "\n")


def format_seconds(s: float) -> str:
    """`4m05s`, or `2h03m` from an hour on (the progress line's ETA)."""
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def speed_and_eta(done: int, total_steps: int, steps_per_sec: float, clips_per_sec: float) -> str:
    """The tail of every progress line: `| 2.41 steps/s 38.6 clips/s | ETA 3m51s`."""
    eta = (total_steps - done) / max(steps_per_sec, 1e-9)
    return f"| {steps_per_sec:.2f} steps/s {clips_per_sec:.1f} clips/s | ETA {format_seconds(eta)}"
