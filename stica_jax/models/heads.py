"""Projection head: Dropout → Dense (no bias) → BN → ReLU → Dropout → Dense → L2 normalise."""

import jax
import jax.numpy as jnp
from flax import nnx

from stica_jax.models.layers import Dtype, SampleDropout, batch_norm, linear


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Unit-norm rows in at least float32 (like torch's F.normalize with eps 1e-12)."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class ProjectionHead(nnx.Module):
    """512 → 512 (no bias) → BN → ReLU → 256, dropout 0.3 before each dense, L2-normalised."""

    def __init__(
        self,
        in_features: int = 512,
        hidden: int = 512,
        out_features: int = 256,
        dropout: float = 0.3,
        *,
        axis_name: str | None = None,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.dropout1 = SampleDropout(dropout)
        self.fc1 = linear(in_features, hidden, use_bias=False, dtype=dtype, rngs=rngs)
        self.bn = batch_norm(hidden, axis_name=axis_name, dtype=dtype, rngs=rngs)
        self.dropout2 = SampleDropout(dropout)
        self.fc2 = linear(hidden, out_features, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, keys: jax.Array | None = None) -> jax.Array:
        """x `[N, in_features]`, keys `[N]` per-row dropout keys → unit vectors `[N, out]` f32."""
        k1 = k2 = None
        if keys is not None:
            k1 = jax.vmap(jax.random.fold_in, (0, None))(keys, 1)
            k2 = jax.vmap(jax.random.fold_in, (0, None))(keys, 2)
        x = jax.nn.relu(self.bn(self.fc1(self.dropout1(x, k1))))
        return l2_normalize(self.fc2(self.dropout2(x, k2)))
