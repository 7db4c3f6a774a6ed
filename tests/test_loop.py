"""The one training loop (`loop.train`) on its own: a toy train step whose every number is known,
real orbax checkpoints, a real profiler trace. What it must do is written out here step by step
(the saves, the logged means, the hook calls, the stop on a non-finite step, the resume)."""

import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from stica_jax import checkpointing, loop, step as step_lib
from stica_jax.errors import NonFiniteError


@struct.dataclass
class ToyState:
    step: jax.Array
    total: jax.Array  # the running sum of every batch's "x"


def toy_train_step(bad_at: int | None = None):
    """`(state, batch, rng) → (state, metrics)`: adds the batch's sum to `total`; "loss" is that
    sum; at step `bad_at` (counted from 1) the loss is NaN and the state is kept, as
    `step.keep_if_finite` does."""

    @jax.jit
    def train_step(state, batch, rng):
        del rng
        loss = jnp.sum(batch["x"])
        finite = jnp.asarray(True) if bad_at is None else state.step + 1 != bad_at
        loss = jnp.where(finite, loss, jnp.nan)
        new = ToyState(step=state.step + 1, total=state.total + jnp.sum(batch["x"]))
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        metrics = {"loss": loss, "grad_norm": jnp.float32(1.0), "finite": finite.astype(float)}
        return new, metrics

    return train_step


class ToyShard:
    """Batch s (from `start`) holds the rows [s, s] (so its sum is 2 s)."""

    skipped_records = 0

    def __init__(self, start):
        self.s = start

    def __next__(self):
        self.s += 1
        return {"x": np.full((2,), self.s - 1, np.float32), "index": np.arange(2)}

    def stand_in_batch(self):
        return {"x": np.zeros((2,), np.float32), "index": np.arange(2)}


class Writer:
    def __init__(self):
        self.rows = {}

    def write_scalars(self, step, scalars):
        self.rows.setdefault(step, {}).update(scalars)

    def flush(self):
        pass


def run(workdir, *, total, start_state=None, bad_at=None, profile_steps=0, calls=None):
    saver = checkpointing.Saver(checkpointing.make_manager(workdir, keep=10))
    state = start_state or ToyState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))
    state, start = loop.restore_or_start(saver, state)
    writer = Writer()
    final, scalars = loop.train(
        toy_train_step(bad_at),
        state,
        loop.ShardBatches([ToyShard(start)]),
        jax.random.key(0),
        mesh=step_lib.make_mesh(jax.devices()[:1]),
        saver=saver,
        writer=writer,
        workdir=workdir,
        start_step=start,
        total_steps=total,
        global_batch_size=2,
        log_every_steps=3,
        save_at=lambda done: done % 4 == 0,
        learning_rates={"learning_rate": lambda step: 0.5 * step},
        describe=lambda done: f"epoch {done // 4} ",
        after_step=None if calls is None else lambda done, s: calls.append((done, int(s.step))),
        profile_steps=profile_steps,
    )
    return final, scalars, writer, saver


def test_the_loop_steps_logs_means_saves_and_calls_its_hook(tmp_path, capsys):
    calls = []
    final, scalars, writer, saver = run(str(tmp_path), total=10, calls=calls)
    assert int(final.step) == 10 and float(final.total) == 2 * sum(range(10))
    # Saves at 4 and 8 (save_at) and at the last step, 10.
    assert sorted(saver.manager.all_steps()) == [4, 8, 10]
    # A log every 3 steps and at each save: 3, 4, 6, 8, 9, 10; each row the mean loss of the
    # steps since the previous one (step s has loss 2 (s - 1)).
    rows = [json.loads(line) for line in open(tmp_path / loop.METRICS_FILE)]
    assert [r["step"] for r in rows] == [3, 4, 6, 8, 9, 10]
    bounds = [0, 3, 4, 6, 8, 9, 10]
    for row, lo, hi in zip(rows, bounds, bounds[1:]):
        assert row["loss"] == pytest.approx(np.mean([2 * (s - 1) for s in range(lo + 1, hi + 1)]))
        assert row["learning_rate"] == 0.5 * (hi - 1)  # the schedule at the step just taken
    assert writer.rows[10]["loss"] == rows[-1]["loss"] == scalars["loss"]
    # The hook sees every step's state once, after the step.
    assert calls == [(d, d) for d in range(1, 11)]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("epoch 0 step 3/10 (30%) loss 2.000 lr 1 | ")
    assert out[-1].startswith("epoch 2 step 10/10 (100%) loss 18.000 lr 4.5 | ")


def test_a_non_finite_step_stops_before_its_save_naming_the_last_checkpoint(tmp_path):
    with pytest.raises(NonFiniteError) as error:
        run(str(tmp_path), total=10, bad_at=6)
    message = str(error.value)
    assert message.startswith("epoch 1 step 6: non-finite loss or gradient (loss=nan")
    assert message.endswith("The last checkpoint, step 4, is finite.")
    assert sorted(checkpointing.make_manager(str(tmp_path)).all_steps()) == [4]


def test_a_restarted_loop_resumes_from_the_newest_checkpoint(tmp_path, capsys):
    run(str(tmp_path), total=8)
    capsys.readouterr()
    final, _, _, saver = run(str(tmp_path), total=10)
    assert "resuming from the checkpoint of step 8" in capsys.readouterr().out
    assert int(final.step) == 10 and float(final.total) == 2 * sum(range(10))
    assert sorted(saver.manager.all_steps()) == [4, 8, 10]


def test_profile_steps_write_a_trace_for_tensorboard(tmp_path):
    run(str(tmp_path), total=5, profile_steps=2)
    traces = glob.glob(os.path.join(tmp_path, "profile", "plugins", "profile", "*", "*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
