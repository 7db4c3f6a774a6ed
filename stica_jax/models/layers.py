"""Convolution, normalisation and dropout layers shared by the STiCA networks.

Everything here matches torchvision's conventions so weights transfer 1:1:
bias-free convolutions with explicit symmetric padding (JAX's 'SAME' pads stride-2
convolutions asymmetrically), Kaiming-normal fan-out initialisation, BatchNorm with
eps 1e-5 and torch momentum 0.1, and torch's default `nn.Linear` initialisation.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Dtype = Any

# torchvision ResNets: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu").
# torch draws from an untruncated normal, as JAX's "normal" does (not "truncated_normal").
conv_kernel_init = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight (and bias).
linear_kernel_init = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def linear_bias_init(fan_in: int):
    """torch nn.Linear default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Conv(nnx.Module):
    """A bias-free convolution over 2 (H, W) or 3 (T, H, W) axes, channels last.

    Parameters are `kernel` of shape `kernel_size + (in, out)`, initialised like torchvision
    (and like `nnx.Conv` with the same key). A 3-D kernel that spans only space `(1, kh, kw)`
    or only time `(kt, 1, 1)` — every convolution of R(2+1)D — runs as a 2-D convolution over
    `[B·T, H, W]` or `[B, T, H·W]`: the same sums, and several times faster forward + backward
    than a 3-D convolution on CPUs and GPUs (`benchmarks/conv2plus1d.py`; the numbers are in
    `benchmarks/RESULTS.md`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Sequence[int],
        strides: Sequence[int],
        padding: Sequence[int],
        *,
        dtype: Dtype,
        rngs: nnx.Rngs,
    ):
        if not len(kernel_size) == len(strides) == len(padding) in (2, 3):
            raise ValueError(
                f"kernel_size {kernel_size}, strides {strides} and padding "
                f"{padding} must all have 2 or 3 entries"
            )
        shape = (*kernel_size, in_features, out_features)
        self.kernel = nnx.Param(conv_kernel_init(rngs.params(), shape, jnp.float32))
        self.kernel_size, self.strides = tuple(kernel_size), tuple(strides)
        self.padding = tuple(padding)
        self.dtype = dtype
        # Set by `configure_convolutions`; 0 = convolve the channels as they are.
        self.channel_multiple = 0

    def _conv2d(self, x, kernel, strides, padding):
        return jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=strides,
            padding=[(p, p) for p in padding],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    def _pad_channels(self, x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Zero channels up to a multiple of `channel_multiple` (tensor-core friendly widths:
        45, 230, 460, 921 and the 3-channel stem are not multiples of 8). Zeros add nothing to
        the sums; the caller drops the padded output channels, so the parameters keep their
        shape and the gradients of the real channels are unchanged."""
        m = self.channel_multiple
        pad_in, pad_out = -kernel.shape[-2] % m, -kernel.shape[-1] % m
        if pad_in:
            x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad_in)])
        if pad_in or pad_out:
            kernel = jnp.pad(kernel, [(0, 0)] * (kernel.ndim - 2) + [(0, pad_in), (0, pad_out)])
        return x, kernel

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        kernel = self.kernel.get_value().astype(self.dtype)
        out_features = kernel.shape[-1]
        if self.channel_multiple > 1:
            x, kernel = self._pad_channels(x, kernel)
            if kernel.shape[-1] != out_features:
                return self._convolve(x, kernel)[..., :out_features]
        return self._convolve(x, kernel)

    def _convolve(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
        if len(self.kernel_size) == 2:
            return self._conv2d(x, kernel, self.strides, self.padding)
        (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = self.kernel_size, self.strides, self.padding
        b, t, h, w, c = x.shape
        if kt == 1 and pt == 0:  # Space only: fold time into the batch.
            x = x[:, ::st]
            y = self._conv2d(x.reshape(-1, h, w, c), kernel[0], (sh, sw), (ph, pw))
            return y.reshape(b, x.shape[1], *y.shape[1:])
        if kh == kw == 1 and ph == pw == 0:  # Time only: fold space into one axis.
            x = x[:, :, ::sh, ::sw]
            h, w = x.shape[2:4]
            y = self._conv2d(x.reshape(b, t, h * w, c), kernel[:, 0], (st, 1), (pt, 0))
            return y.reshape(b, y.shape[1], h, w, -1)
        return jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=self.strides,
            padding=[(p, p) for p in self.padding],
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        )


def conv(
    in_features: int,
    out_features: int,
    kernel_size: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[int],
    *,
    dtype: Dtype,
    rngs: nnx.Rngs,
) -> Conv:
    """A bias-free convolution with explicit symmetric padding `padding[i]` on each side."""
    return Conv(in_features, out_features, kernel_size, strides, padding, dtype=dtype, rngs=rngs)


def configure_convolutions(model: nnx.Module, *, channel_multiple: int = 0) -> int:
    """Pad every `Conv` of `model` to channel counts that are multiples of `channel_multiple`
    inside the call (0 or 1: off). Parameters and results are unchanged; returns how many
    convolutions have a channel count that gets padded."""
    if channel_multiple < 0:
        raise ValueError(f"channel_multiple must be >= 0, got {channel_multiple}")
    padded = 0
    for _, module in nnx.iter_modules(model):
        if isinstance(module, Conv):
            module.channel_multiple = channel_multiple
            shape = module.kernel.get_value().shape
            padded += channel_multiple > 1 and bool(
                shape[-2] % channel_multiple or shape[-1] % channel_multiple
            )
    return padded


BATCH_NORM_SYNC = ("global", "device")


def configure_batch_norm(model: nnx.Module, *, one_pass: bool = False, sync: str = "global") -> int:
    """Choose how every BatchNorm of `model` computes its batch statistics; returns their count.

    `one_pass`: mean and mean of squares in one pass over the activations (float32), averaged
    over devices by ONE stacked `pmean`, variance `E[x²] − E[x]²` clipped at 0; instead of the
    default two passes `E[(x − E[x])²]` with two dependent `pmean`s. Agrees to float32 rounding
    while |mean| is not ≫ std (cancellation); `tests/test_layer_options.py` bounds it.
    `sync`: "global" (default) averages the statistics over the model's mesh axis (SyncBN:
    the result does not depend on the device count); "device" uses each device's shard alone
    (no collective for the statistics, as a non-synchronised PyTorch BatchNorm does per GPU;
    the result then depends on the per-device batch).
    """
    if sync not in BATCH_NORM_SYNC:
        raise ValueError(f"unknown BatchNorm sync {sync!r}; expected one of {BATCH_NORM_SYNC}")
    count = 0
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm):
            module.use_fast_variance = one_pass
            if sync == "device":
                module.axis_name = None
            count += 1
    return count


class RunningStat(nnx.BatchStat):
    """A BatchNorm running statistic (an `nnx.BatchStat`) whose update costs O(1) to trace.

    `nnx.BatchNorm` updates its statistics by `stat[...] = new`. Flax's generic `__setitem__`
    first compares the shardings of the old and new value, and a traced value's `sharding`
    raises an AttributeError whose message (JAX's `_origin_msg`) walks every equation traced so
    far: each update costs time in proportion to the program so far, quadratic over the step.
    That was a third of tracing the SOTA train step (py-spy: 255 of 767 samples). When both
    values are tracers of one shape and dtype, flax's comparison is `None == None` and it
    replaces the value; this does the same directly. Anything else takes flax's path.
    """

    def __setitem__(self, key, value) -> None:
        old = self.get_raw_value()
        if (
            key is Ellipsis
            and isinstance(value, jax.core.Tracer)
            and isinstance(old, jax.core.Tracer)
            and value.shape == old.shape
            and value.dtype == old.dtype
        ):
            self.set_raw_value(value)
        else:
            super().__setitem__(key, value)


def batch_norm(
    num_features: int, *, axis_name: str | None, dtype: Dtype, rngs: nnx.Rngs
) -> nnx.BatchNorm:
    """BatchNorm as torch has it (eps 1e-5, momentum 0.1), synchronised over `axis_name`.

    With `axis_name` set (the `data` mesh axis inside `shard_map`), batch statistics are
    averaged over all devices, so the result equals one device seeing the global batch.
    Statistics are always computed in float32, whatever the compute dtype; they are
    `RunningStat`s (cheap to trace).
    """
    bn = nnx.BatchNorm(
        num_features,
        momentum=0.9,  # Flax keeps `momentum` of the old value: torch's 0.1 update rate.
        epsilon=1e-5,
        axis_name=axis_name,
        use_fast_variance=False,  # E[(x-mean)^2]: no cancellation in bf16/f32 activations.
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )
    bn.mean, bn.var = RunningStat(bn.mean.get_value()), RunningStat(bn.var.get_value())
    return bn


def linear(
    in_features: int, out_features: int, *, use_bias: bool = True, dtype: Dtype, rngs: nnx.Rngs
) -> nnx.Linear:
    """A dense layer initialised like torch's `nn.Linear`."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=linear_kernel_init,
        bias_init=linear_bias_init(in_features),
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def fold_keys(keys: jax.Array, *data: int) -> jax.Array:
    """Fold integers into each of `[N]` PRNG keys (per-purpose keys from per-sample keys)."""
    for d in data:
        keys = jax.vmap(jax.random.fold_in, (0, None))(keys, d)
    return keys


class SampleDropout(nnx.Module):
    """Dropout whose mask for row i is drawn from `keys[i]`.

    The trainer derives `keys` from each sample's global index, so the masks (and hence
    the loss) do not depend on how the global batch is split over devices — a plain
    `nnx.Dropout` draws one mask per device shard from the same stream and would.
    `deterministic` is toggled by `Module.train()` / `Module.eval()` like `nnx.Dropout`.
    """

    def __init__(self, rate: float, *, deterministic: bool = False):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.deterministic = deterministic

    def __call__(self, x: jax.Array, keys: jax.Array | None) -> jax.Array:
        """x: `[N, D]`; keys: `[N]` typed PRNG keys (ignored when deterministic)."""
        if self.deterministic or self.rate == 0.0:
            return x
        if keys is None:
            raise ValueError("SampleDropout in training mode needs per-sample keys")
        # float32 probability: the masks must not change with jax_enable_x64.
        p_keep = jnp.float32(1.0 - self.rate)
        keep = jax.vmap(lambda k: jax.random.bernoulli(k, p_keep, x.shape[1:]))(keys)
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x))
