"""`step.keep_if` / `step.all_finite`: the train step's "leave the state unchanged when the new
one is not finite", its values, and a compiled program that grows linearly with the state."""

import jax
import jax.numpy as jnp
import numpy as np

from stica_jax import step


def _state(num_leaves: int) -> list[jax.Array]:
    return [jnp.ones((4 + i % 5, 3), jnp.float32) for i in range(num_leaves)]


def _guarded_update(state):
    new = [x * 1.5 + 1 for x in state]
    return step.keep_if(step.all_finite(new), new, state)


def test_a_finite_update_is_taken_and_a_non_finite_one_is_not():
    state = _state(5)
    for new, old in zip(jax.jit(_guarded_update)(state), state):
        np.testing.assert_array_equal(new, np.full(old.shape, 2.5, np.float32))
    # One inf in one leaf: every leaf keeps its old value (-inf * 1.5 + 1 is -inf).
    state[3] = state[3].at[2, 1].set(-jnp.inf)
    for new, old in zip(jax.jit(_guarded_update)(state), state):
        np.testing.assert_array_equal(new, old)
    # Integer leaves (a step counter) are not checked, and are kept or replaced with the rest.
    assert bool(step.all_finite({"step": jnp.int32(3), "w": jnp.ones(2)}))
    assert not bool(step.all_finite({"step": jnp.int32(3), "w": jnp.array([1.0, jnp.nan])}))


def _optimized_hlo_lines(num_leaves: int) -> int:
    compiled = jax.jit(_guarded_update).lower(_state(num_leaves)).compile()
    return len(compiled.as_text().splitlines())


def test_the_compiled_guard_grows_linearly_with_the_number_of_leaves():
    # A `jnp.where(ok, new, old)` per leaf let XLA copy the whole `and` chain behind `ok` into
    # every leaf's select fusion: 4x the leaves gave 12x the program (measured: 40 leaves 4,575
    # lines, 160 leaves 56,535). With one `lax.cond`: 1,500 and 5,940, linear.
    small, large = _optimized_hlo_lines(40), _optimized_hlo_lines(160)
    assert large < 6 * small, (small, large)
