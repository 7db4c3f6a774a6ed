"""Non-trivial normalisation statistics for parity tests, and flat variable values."""

import jax.numpy as jnp
import numpy as np
from flax import nnx


def randomize_norms(model: nnx.Module, seed: int) -> None:
    """Random BN running statistics and norm/bias parameters, in place (instead of training)."""
    rng = np.random.default_rng(seed)
    for path, node in nnx.iter_graph(model):
        if not isinstance(node, nnx.Variable) or not path:
            continue
        shape = node.get_value().shape
        new = {
            "mean": lambda: rng.normal(0.0, 0.2, shape),
            "var": lambda: rng.uniform(0.5, 2.0, shape),  # positive
            "scale": lambda: rng.uniform(0.5, 1.5, shape),
            "bias": lambda: rng.normal(0.0, 0.1, shape),
        }.get(path[-1])
        if new is not None:
            node.set_value(jnp.asarray(new(), jnp.float32))


def flat_values(model: nnx.Module) -> dict[tuple, np.ndarray]:
    """Every variable of `model` by path."""
    return {path: np.asarray(v.get_value()) for path, v in nnx.to_flat_state(nnx.state(model))}
