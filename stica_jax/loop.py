"""The one training loop (`train`) of pretraining, supervised training (`stica_jax.train`),
fine-tuning and the linear probe (`stica_jax.evaluate.finetune`), and its parts: this host's
share of each global batch (`ShardBatches`), resuming (`restore_or_start`), the stop on a
non-finite step (`check_finite`), the `metrics.jsonl` record and the progress line.

It imports no TensorFlow: the input pipeline is passed in as a function.
"""

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from data_pipeline.errors import one_line
from stica_jax import checkpointing, distributed, step as step_lib
from stica_jax.errors import ConfigError, NonFiniteError, UserError


class InputError(UserError):
    """A host's training input failed (data without a readable record...): raised on every host
    of a multi-host job with the message of the host that failed."""


class ShardBatches:
    """This host's rows of each global batch, read as `num_shards` fixed data shards.

    Shard s yields rows `[s·B/S, (s+1)·B/S)` of every global batch, so the global batches (and
    the per-sample randomness, keyed by the global index) do not depend on how many hosts
    share the work: 2 hosts × 1 shard each read exactly what 1 host × 2 shards reads.

    An input failure stops every host. Single-host the error is raised at once. Multi-host, the
    host whose input fails cannot just raise: the others are in, or about to enter, train steps
    whose collectives need it, and would wait for it until the job is torn down. So it keeps
    stepping on stand-in batches (zeros, `batching.TrainingBatches.stand_in_batch`), and every host learns of
    the failure at the next `stop_if_any_host_failed`, which the loop calls on every host before
    it keeps anything of a step (its metrics, a checkpoint, an evaluation), and raises the same
    error. That costs one all-gather of a flag per call, where the loop already waits for the
    steps' metrics: an agreement before every step would instead be a collective per step and a
    wait for the previous step, which stops the host dispatching ahead of the devices. The cost
    of a failure is at most one logging interval of steps on stand-in rows, never kept. The
    first batch of a run is checked at once (before any step): data that is unreadable from the
    start stops the job before it compiles.
    """

    def __init__(self, shards: list):
        self.shards = shards
        self._failure: Exception | None = None  # this host's input error (multi-host only)
        self._stand_in: dict[str, np.ndarray] | None = None
        self._unchecked = False  # batches given since the last `stop_if_any_host_failed`
        self._first = True

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self._next()
        if self._first:
            # The run's first batch, which every host fetches at the same point: a host whose
            # input fails at once stops the job here, before the first step compiles (minutes on
            # a pod). One all-gather per run.
            self._first = False
            self.stop_if_any_host_failed()
        return batch

    def _next(self) -> dict[str, np.ndarray]:
        self._unchecked = True
        if self._failure is None:
            try:
                parts = [next(s) for s in self.shards]
                return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            except Exception as error:
                if jax.process_count() == 1:
                    raise
                self._failure = error
                logging.info("this host's input failed (%s); stepping on stand-in rows", error)
        if self._stand_in is None:
            parts = [s.stand_in_batch() for s in self.shards]
            self._stand_in = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return self._stand_in

    def stop_if_any_host_failed(self) -> None:
        """Raise, on every host alike, the error of the first host whose input failed; a no-op
        when none did, when no batch was given since the last call, or on a single host.

        Every host must call it at the same steps (it is a collective when multi-host). A user
        error (`UserError`, such as the pipeline's `CorruptDataError`) becomes one `InputError`
        naming the host, so every host prints the same line; any other error is re-raised with
        its traceback where it happened and reported as a `RuntimeError` on the other hosts.
        """
        if not self._unchecked or jax.process_count() == 1:
            return
        self._unchecked = False
        mine = None
        if self._failure is not None:
            user = isinstance(self._failure, UserError)
            text = (
                str(self._failure) if user else f"{type(self._failure).__name__}: {self._failure}"
            )
            mine = json.dumps({"user_error": user, "message": one_line(text)})
        failure = distributed.first_failure(mine, topic="input")
        if failure is None:
            return
        process, published = failure
        published = json.loads(published)
        message = f"process {process} of {jax.process_count()}: {published['message']}"
        if not published["user_error"]:
            if process == jax.process_index():
                raise self._failure
            raise RuntimeError(message)
        raise InputError(message) from (self._failure if process == jax.process_index() else None)

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
    process_count=, start_step=)` pipeline (`data_pipeline.pipeline.make_dataset` with its purpose bound)."""
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


def check_finite(history: list[Mapping[str, Any]], done: int, saver: Any, prefix: str = "") -> None:
    """Raise `NonFiniteError` for the first step of `history` whose `finite` metric is 0.

    `history` holds the host metrics of steps `done - len(history) + 1 … done`; a loop calls
    this before every save, so the newest checkpoint of `saver` (`checkpointing.Saver`, waited
    for first so that the checkpoint named is complete) is finite. The step kept its old state
    (`step.keep_if_finite`); the message says whether the loss or gradient was non-finite or
    the update overflowed the state, and names the checkpoint.
    """
    bad = [i for i, m in enumerate(history) if not m["finite"]]
    if not bad:
        return
    saver.wait()
    last_checkpoint = saver.manager.latest_step()
    metrics, step = history[bad[0]], done - len(history) + bad[0] + 1
    if np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"]):
        what = "the update made the parameters, BatchNorm statistics or optimizer state non-finite"
    else:
        what = "non-finite loss or gradient"
    raise NonFiniteError(
        f"{prefix}step {step}: {what} (loss={metrics['loss']}, grad_norm={metrics['grad_norm']}); "
        "stopping without saving it. "
        + (
            f"The last checkpoint, step {last_checkpoint}, is finite."
            if last_checkpoint
            else "No checkpoint was saved."
        )
    )


# ---------------------------------------------------------------------------------------------
# The loop of every kind of training
# ---------------------------------------------------------------------------------------------


def restore_or_start(saver: Any, state: Any, *, describe: str = "") -> tuple[Any, int]:
    """(state, start step): the newest checkpoint of `saver.manager` that restores (unreadable
    newer ones set aside, `checkpointing.restore_newest`), or `state` at step 0."""
    restored = checkpointing.restore_newest(saver.manager, state)
    if restored is None:
        return state, 0
    state, start_step = restored
    logging.info("resumed from step %d of %s", start_step, saver.manager.directory)
    if jax.process_index() == 0:
        print(f"{describe}resuming from the checkpoint of step {start_step}", flush=True)
    return state, start_step


def progress_line(
    done: int, total_steps: int, scalars: Mapping[str, float], learning_rate: float
) -> str:
    """`step 31/465 (7%) loss 2.612 [av 2.689 crops 2.406] top1 12.5% lr 0.1 | …`: the loss, its
    terms (`loss_<term>` metrics), top-1 where the loss has one, the (first) learning rate,
    speed and ETA."""
    terms = " ".join(
        f"{k[5:]} {scalars[k]:.3f}"
        for k in sorted(scalars)
        if k.startswith("loss_") and k.count("_") == 1
    )
    top1 = f"top1 {100 * scalars['top1']:.1f}% " if "top1" in scalars else ""
    return (
        f"step {done}/{total_steps} ({100 * done / total_steps:.0f}%) "
        f"loss {scalars['loss']:.3f} {f'[{terms}] ' if terms else ''}{top1}"
        f"lr {learning_rate:.4g} "
        + speed_and_eta(done, total_steps, scalars["steps_per_sec"], scalars["clips_per_sec"])
    )


def train(
    train_step: Callable,
    state: Any,
    batches: ShardBatches,
    rng: jax.Array,
    *,
    mesh: jax.sharding.Mesh,
    saver: Any,
    writer: Any,
    workdir: str,
    start_step: int,
    total_steps: int,
    global_batch_size: int,
    log_every_steps: int,
    save_at: Callable[[int], bool],
    learning_rates: Mapping[str, Callable],
    describe: Callable[[int], str] = lambda done: "",
    after_step: Callable[[int, Any], None] | None = None,
    profile_steps: int = 0,
) -> tuple[Any, dict[str, float]]:
    """Steps `start_step … total_steps - 1` of `train_step` (`step.make_train_step`); returns
    the final state and the last logged scalars.

    After each step (its number `done` counted from 1):
    - every `log_every_steps` and before each save: every host had its input
      (`ShardBatches.stop_if_any_host_failed`), each step since the last check was finite
      (`check_finite`: a non-finite one stops the run before anything of it is saved), and the
      mean metrics, the learning rates (`learning_rates`: scalar name → schedule), speed and
      skipped records go to `writer`, `workdir/metrics.jsonl` and, on process 0, a progress line
      prefixed by `describe(done)`;
    - `after_step(done, state)`, when given (an evaluation: it sees the state of step `done`);
    - a checkpoint through `saver` (`checkpointing.Saver`) when `save_at(done)`, at the last
      step, or when the cluster is being preempted (orbax's preemption sync point).
    `profile_steps` > 0: a `jax.profiler` trace of that many steps after the first (which
    compiles) is written to `workdir/profile` (TensorBoard's profile tab). Whatever ends the
    loop, the checkpoint in flight completes, so a restart resumes from it.
    """
    manager = saver.manager
    is_chief = jax.process_index() == 0
    pending: list[dict[str, jax.Array]] = []
    last_time, last_step = time.time(), start_step
    scalars: dict[str, float] = {}
    profile = (start_step + 1, start_step + 1 + profile_steps) if profile_steps else None
    try:
        for step in range(start_step, total_steps):
            if profile and step == profile[0]:
                jax.profiler.start_trace(os.path.join(workdir, "profile"))
            batch = step_lib.global_batch(next(batches), mesh)
            state, metrics = train_step(state, batch, rng)
            pending.append(metrics)
            done = step + 1
            if profile and done == min(profile[1], total_steps) and step >= profile[0]:
                jax.block_until_ready(state)
                jax.profiler.stop_trace()
            saver.check()  # a save that failed in the background stops the run now
            save = save_at(done) or done == total_steps or manager.reached_preemption(done)
            # Every save is preceded by the check that each step since the last one was finite.
            if save or done % log_every_steps == 0:
                batches.stop_if_any_host_failed()  # and that every host had its input
                history = jax.device_get(pending)
                pending = []
                prefix = describe(done)
                check_finite(history, done, saver, prefix)
                now = time.time()
                steps_per_sec = (done - last_step) / max(now - last_time, 1e-9)
                scalars = {
                    k: float(np.mean([m[k] for m in history])) for k in history[0] if k != "finite"
                }
                scalars.update(
                    {name: float(s(step)) for name, s in learning_rates.items()},
                    steps_per_sec=steps_per_sec,
                    clips_per_sec=steps_per_sec * global_batch_size,
                    skipped_records=float(batches.skipped_records),
                )
                writer.write_scalars(done, scalars)
                append_metrics(workdir, done, scalars)
                if is_chief:
                    first_lr = scalars[next(iter(learning_rates))]
                    print(prefix + progress_line(done, total_steps, scalars, first_lr), flush=True)
                last_time, last_step = time.time(), done
            if after_step is not None:
                batches.stop_if_any_host_failed()
                after_step(done, state)
            if save:
                batches.stop_if_any_host_failed()
                saver.save(done, state)
        saver.wait()
    finally:
        # Also when the loop raises (a non-finite step, KeyboardInterrupt): the checkpoint being
        # written asynchronously completes, so a restart resumes from it. A save that failed
        # was raised by `saver` (one line), or the loop's own error is the one to show.
        try:
            manager.wait_until_finished()
        except Exception:  # noqa: BLE001
            pass
        writer.flush()
    return state, scalars
