"""Temporal pooling of the spatially averaged visual tokens `[N, T, D]` → `[N, D]`.

`avg` is a mean over time. `transformer` is the paper's 2-layer, 4-head, 512-wide post-norm
encoder (GELU FFN of 2048, no dropout) with a learned positional embedding; its output is the
mean of the output tokens. It accepts any token count up to `max_len`, because temporal feature
crops have fewer time steps than the full map. The structure is exactly PyTorch's
`nn.TransformerEncoderLayer(d, h, ffn, dropout=0, activation="gelu", batch_first=True,
norm_first=False)` so the weights export 1:1.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from stica_jax.models.layers import Dtype, linear

POOLING_KINDS = ("avg", "transformer")


class AvgPool(nnx.Module):
    """Mean over the token axis."""

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """tokens `[N, T, D]` → `[N, D]`."""
        return jnp.mean(tokens, axis=1)


class EncoderLayer(nnx.Module):
    """Post-norm transformer layer: `LN(x + MHA(x))`, then `LN(x + FFN(x))`."""

    def __init__(self, width, num_heads, mlp_width, *, dtype, rngs):
        self.attention = nnx.MultiHeadAttention(
            num_heads=num_heads,
            in_features=width,
            qkv_features=width,
            out_features=width,
            dropout_rate=0.0,
            deterministic=True,
            decode=False,
            keep_rngs=False,  # no attention dropout: keep no RNG state in the model
            # torch nn.MultiheadAttention: xavier-uniform over the stacked (3D, D) in-projection
            # (bound sqrt(6 / 4D)), i.e. variance 1/(2D) per q/k/v kernel; zero biases.
            # (nnx initialises the flattened [in, heads*head_dim] kernels.)
            kernel_init=jax.nn.initializers.variance_scaling(0.5, "fan_avg", "uniform"),
            out_kernel_init=jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.norm1 = nnx.LayerNorm(
            width, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, rngs=rngs
        )
        self.linear1 = linear(width, mlp_width, dtype=dtype, rngs=rngs)
        self.linear2 = linear(mlp_width, width, dtype=dtype, rngs=rngs)
        self.norm2 = nnx.LayerNorm(
            width, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.norm1(x + self.attention(x, decode=False))
        # torch's "gelu" is the exact erf form; jax.nn.gelu defaults to the tanh approximation.
        return self.norm2(x + self.linear2(jax.nn.gelu(self.linear1(x), approximate=False)))


class TransformerPool(nnx.Module):
    """Learned positions + post-norm encoder layers; output = mean of the output tokens."""

    def __init__(
        self,
        width: int = 512,
        num_layers: int = 2,
        num_heads: int = 4,
        mlp_width: int = 2048,
        max_len: int = 64,
        *,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if width % num_heads:
            raise ValueError(f"transformer width {width} is not divisible by {num_heads} heads")
        self.max_len = max_len
        self.pos_embedding = nnx.Param(
            jax.random.normal(rngs.params(), (max_len, width), jnp.float32) * 0.02
        )
        self.layers = nnx.List(
            [
                EncoderLayer(width, num_heads, mlp_width, dtype=dtype, rngs=rngs)
                for _ in range(num_layers)
            ]
        )
        self.dtype = dtype

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """tokens `[N, T, D]`, any `T <= max_len` → `[N, D]`."""
        t = tokens.shape[1]
        if t > self.max_len:
            raise ValueError(
                f"transformer pooling got {t} tokens, more than its {self.max_len} "
                "learned positions (model.transformer.max_len)"
            )
        x = (tokens + self.pos_embedding[:t]).astype(self.dtype)
        for layer in self.layers:
            x = layer(x)
        return jnp.mean(x, axis=1)


def make_temporal_pooling(
    kind: str,
    width: int,
    *,
    num_layers: int = 2,
    num_heads: int = 4,
    mlp_width: int = 2048,
    max_len: int = 64,
    dtype: Dtype = jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Module:
    """The pooling module named by `kind` (one of `POOLING_KINDS`)."""
    if kind == "avg":
        return AvgPool()
    if kind == "transformer":
        return TransformerPool(
            width, num_layers, num_heads, mlp_width, max_len, dtype=dtype, rngs=rngs
        )
    raise ValueError(f"unknown temporal pooling {kind!r}; expected one of {POOLING_KINDS}")
