"""The option-gated speed-ups of stica_jax.models.layers and stica_jax.step: one-pass BatchNorm
statistics (one stacked pmean), per-device BatchNorm, and convolutions with channels padded to
a multiple of 8. Each is checked against a NumPy reference or the default path, and the step
stays device-count invariant with one-pass statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from stica_jax import step
from stica_jax.models.layers import (
    Conv,
    batch_norm,
    configure_batch_norm,
    configure_convolutions,
)
from tests.tiny import random_batch, tiny_config, tiny_model


def _reference_bn(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    x = x.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    return (x - x.mean(axes)) / np.sqrt(x.var(axes) + eps)


def _bn(features, one_pass, axis_name=None, sync="global"):
    bn = batch_norm(features, axis_name=axis_name, dtype=jnp.float32, rngs=nnx.Rngs(0))
    configure_batch_norm(bn, one_pass=one_pass, sync=sync)
    return bn


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (3.0, 1.0), (0.5, 0.05)])
def test_one_pass_statistics_match_two_pass(mean, std):
    rng = np.random.default_rng(0)
    x = (mean + std * rng.standard_normal((64, 5, 5, 16))).astype(np.float32)
    ref = _reference_bn(x)
    outs = {}
    for one_pass in (False, True):
        bn = _bn(16, one_pass)
        outs[one_pass] = np.asarray(bn(jnp.asarray(x)))
        np.testing.assert_allclose(np.asarray(bn.var[...]), 0.9 + 0.1 * x.var((0, 1, 2)), rtol=1e-4)
    # |mean| up to 10× std: the cancellation of E[x²] − E[x]² stays within f32 tolerance.
    np.testing.assert_allclose(outs[False], ref, atol=2e-5)
    np.testing.assert_allclose(outs[True], ref, atol=2e-4)
    np.testing.assert_allclose(outs[True], outs[False], atol=2e-4)


@pytest.mark.parametrize("one_pass", [False, True])
def test_the_running_variance_is_the_biased_batch_variance(one_pass):
    """Flax's convention, kept by both ways of computing the statistics: the running variance
    moves towards the batch variance over n values (ddof 0), not torch's n / (n − 1) one. Four
    values per channel, where the two differ by a third (at the test above's 1,600 values they
    differ by 6e-4 relative, inside its tolerance)."""
    x = np.random.default_rng(4).standard_normal((2, 1, 2, 3)).astype(np.float32)
    bn = _bn(3, one_pass)
    bn(jnp.asarray(x))
    biased = x.astype(np.float64).var((0, 1, 2))
    np.testing.assert_allclose(np.asarray(bn.var[...]), 0.9 + 0.1 * biased, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bn.mean[...]), 0.1 * x.mean((0, 1, 2)), atol=1e-7)
    assert np.all(np.abs(np.asarray(bn.var[...]) - (0.9 + 0.1 * biased * 4 / 3)) > 1e-3)


def test_two_pass_statistics_stay_float32_accurate_where_one_pass_cancels():
    """Why `bn_one_pass` is off in configs/sota.py: at a mean 1000 times the spread, E[x²] −
    E[x]² in float32 loses the variance (measured: the output 0.26 off, the running variance
    1.7 %), while the default's two passes stay within the float32 rounding of the input itself
    (1000 × 2⁻²⁴ ≈ 6e-5 of a unit spread; measured 8e-5)."""
    x = (1000.0 + np.random.default_rng(3).standard_normal((64, 5, 5, 16))).astype(np.float32)
    ref = _reference_bn(x)
    two_pass, one_pass = (np.asarray(_bn(16, one)(jnp.asarray(x))) for one in (False, True))
    np.testing.assert_allclose(two_pass, ref, atol=3e-4)
    assert np.abs(one_pass - ref).max() > 1e-2


def _sharded_bn(one_pass, devices, x, sync="global"):
    mesh = step.make_mesh(jax.devices()[:devices])
    bn = _bn(x.shape[-1], one_pass, axis_name=step.MESH_AXIS, sync=sync)
    graphdef, state = nnx.split(bn)

    def per_device(state, x):
        return nnx.merge(graphdef, state)(x)

    f = jax.jit(
        jax.shard_map(
            per_device, mesh=mesh, in_specs=(P(), P(step.MESH_AXIS)), out_specs=P(step.MESH_AXIS)
        )
    )
    x = jax.device_put(jnp.asarray(x), NamedSharding(mesh, P(step.MESH_AXIS)))
    state = jax.device_put(state, NamedSharding(mesh, P()))
    return np.asarray(f(state, x)), f.lower(state, x).as_text(dialect="hlo")


def test_one_pass_sync_bn_is_device_count_invariant_with_one_pmean():
    rng = np.random.default_rng(1)
    x = (2.0 + rng.standard_normal((16, 6, 6, 8))).astype(np.float32)
    ref = _reference_bn(x)
    for one_pass, pmeans in ((False, 2), (True, 1)):
        out4, hlo = _sharded_bn(one_pass, 4, x)
        np.testing.assert_allclose(out4, ref, atol=2e-4)
        assert hlo.count(" all-reduce(") == pmeans, one_pass
    out1, _ = _sharded_bn(True, 1, x)
    np.testing.assert_allclose(out4, out1, atol=1e-5)


def test_per_device_bn_uses_each_shard_alone_and_the_state_keeps_the_mean_statistics():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 4, 4, 8)).astype(np.float32)
    x[4:] = 5.0 + 3.0 * x[4:]  # the two shards have different statistics
    out, hlo = _sharded_bn(False, 2, x, sync="device")
    np.testing.assert_allclose(out[:4], _reference_bn(x[:4]), atol=1e-4)
    np.testing.assert_allclose(out[4:], _reference_bn(x[4:]), atol=1e-4)
    assert " all-reduce(" not in hlo
    # The running statistics the replicated state keeps (`step.average_batch_stats`): the mean
    # over devices of each device's update, momentum 0.9 from mean 0 and variance 1. torch's
    # running variance is unbiased (n / (n - 1)); flax's, the one compared here, is not.
    mesh = step.make_mesh(jax.devices()[:2])
    bn = _bn(8, False, axis_name=step.MESH_AXIS, sync="device")
    graphdef, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)

    def per_device(params, stats, x):
        model = nnx.merge(graphdef, params, stats)
        model(x)
        return step.average_batch_stats(nnx.state(model, nnx.BatchStat))

    averaged = jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(step.MESH_AXIS)), out_specs=P())
    )(params, stats, jnp.asarray(x))
    shards = (x[:4].astype(np.float64), x[4:].astype(np.float64))
    want_mean = np.mean([0.1 * s.mean((0, 1, 2)) for s in shards], axis=0)
    want_var = np.mean([0.9 + 0.1 * s.var((0, 1, 2)) for s in shards], axis=0)
    np.testing.assert_allclose(np.asarray(averaged["mean"][...]), want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(averaged["var"][...]), want_var, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown BatchNorm sync"):
        configure_batch_norm(_bn(4, False), sync="group")


@pytest.mark.parametrize(
    "shape,cin,cout,kernel,strides,padding",
    [
        ((2, 4, 12, 12, 3), 3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3)),  # R(2+1)D stem, space
        ((2, 4, 6, 6, 45), 45, 64, (3, 1, 1), (1, 1, 1), (1, 0, 0)),  # stem, time
        ((2, 4, 6, 6, 16), 16, 230, (3, 1, 1), (2, 1, 1), (1, 0, 0)),  # strided time
        ((2, 4, 6, 6, 10), 10, 12, (1, 1, 1), (2, 2, 2), (0, 0, 0)),  # shortcut
        ((2, 3, 3, 3, 5), 5, 7, (3, 3, 3), (1, 1, 1), (1, 1, 1)),  # a full 3-D kernel
        ((2, 20, 16, 1), 1, 64, (7, 7), (2, 2), (3, 3)),  # ResNet-9 conv1, 1 channel
    ],
)
def test_padded_convolution_equals_plain(shape, cin, cout, kernel, strides, padding):
    conv = Conv(cin, cout, kernel, strides, padding, dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
    graphdef, params = nnx.split(conv)

    def loss(params, x, multiple):
        c = nnx.merge(graphdef, params)
        configure_convolutions(c, channel_multiple=multiple)
        y = c(x)
        return jnp.sum(y * jnp.cos(y)), y

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2)
    (l0, y0), g0 = grad(params, x, 0)
    (l8, y8), g8 = grad(params, x, 8)
    assert y8.shape == y0.shape and y0.shape[-1] == cout
    np.testing.assert_allclose(y8, y0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g8[1], g0[1], rtol=1e-4, atol=1e-4)  # input gradient
    k0, k8 = jax.tree.leaves(g0[0])[0], jax.tree.leaves(g8[0])[0]
    assert k8.shape == k0.shape == (*kernel, cin, cout)  # parameters keep their shape
    np.testing.assert_allclose(k8, k0, rtol=1e-4, atol=1e-4)


def test_configure_convolutions_pads_the_odd_widths_of_sota():
    from configs import sota
    from stica_jax.models.stica import build_model

    config = sota.get_config()
    model = nnx.eval_shape(lambda: build_model(config.model, config.crops, rngs=nnx.Rngs(0)))
    # spec §1: stem 3→45→64; the mids 230, 460, 921 of the first block of stages 2-4 (their
    # second blocks use 288, 576, 1152), 4 convolutions each; spec §2: ResNet-9's 1-channel conv1.
    assert configure_convolutions(model, channel_multiple=8) == 2 + 3 * 4 + 1
    assert configure_convolutions(model, channel_multiple=0) == 0
    with pytest.raises(ValueError):
        configure_convolutions(model, channel_multiple=-8)


def _step_all_reduces(*, one_pass=False, per_device=False) -> int:
    """The all-reduces of the tiny net's gradient step on 4 devices, lowered (not compiled)."""
    config = tiny_config("float32")
    model = tiny_model(config, axis_name=step.MESH_AXIS)
    configure_batch_norm(model, one_pass=one_pass, sync="device" if per_device else "global")
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    grad_fn = step.make_grad_fn(
        graphdef,
        step.LossConfig.from_config(config.loss),
        step.make_mesh(jax.devices()[:4]),
        per_device_batch_norm=per_device,
    )
    lowered = grad_fn.lower(params, stats, random_batch(config, 8), jax.random.key(0))
    return lowered.as_text().count("all_reduce")


def test_the_step_lowers_with_one_pass_statistics_and_with_per_device_statistics():
    """The two BatchNorm options no config uses, in the whole train step, lowered (not
    compiled: their numbers are the layer tests' above, against NumPy and on 1/2/4 devices).

    One pass saves a collective per BatchNorm and use: fewer all-reduces than two passes. Per
    device, each shard's statistics leave the step averaged (`step.average_batch_stats`):
    without the average they cannot leave as one replicated value and the step does not lower.
    """
    two_pass, one_pass = _step_all_reduces(), _step_all_reduces(one_pass=True)  # 540, 458
    per_device = _step_all_reduces(one_pass=True, per_device=True)  # loss and gradients only
    assert 0 < per_device < one_pass < two_pass, (per_device, one_pass, two_pass)


def test_the_performance_fields_of_a_config_reach_the_trained_model():
    """`config.performance` (configs/sota.py) is what `models.build_train_model` builds: every
    BatchNorm and convolution of the model gets the configured option (each option's numbers
    are checked against their references by the tests above), and the defaults leave the
    layers as they are."""
    from stica_jax.models import build_train_model

    def built(config):
        model = nnx.eval_shape(
            lambda: build_train_model(config, axis_name=step.MESH_AXIS, rngs=nnx.Rngs(0))
        )
        norms = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)]
        convs = [m for _, m in nnx.iter_modules(model) if isinstance(m, Conv)]
        assert norms and convs
        return norms, convs

    config = tiny_config()
    norms, convs = built(config)  # the defaults: two-pass SyncBN, unpadded channels
    assert not any(m.use_fast_variance for m in norms)
    assert all(m.axis_name == step.MESH_AXIS for m in norms)
    assert all(m.channel_multiple == 0 for m in convs)
    p = config.performance
    p.bn_one_pass, p.bn_sync, p.conv_channel_multiple = True, "device", 8
    norms, convs = built(config)
    assert all(m.use_fast_variance and m.axis_name is None for m in norms)
    assert all(m.channel_multiple == 8 for m in convs)


@pytest.mark.parametrize("sum_grads_once", [False, True])
def test_gradient_sums_over_devices_are_float32_once_per_weight(sum_grads_once):
    """`step.value_and_global_grad` on 8 devices, for a weight used 7 times per step in bfloat16
    compute (as the pooling and head weights are: once per view and crop family).

    The inputs make every per-device, per-use gradient an exact bfloat16 number (integers
    times a power of two: device d's data is scaled by 2^d), so the float64 reference below is
    the exact sum of the very terms the devices add, and all the error is the sum's. Its 56
    terms need up to 14 significant bits: float32 (24) holds them exactly, bfloat16 (8) does
    not. One float32 sum per weight must be within float32 rounding of the float64 sum
    (n · eps32 · Σ|terms|, the bound of a recursive sum of n terms); the bfloat16 sums per use
    are 1.4e-3 relative off here, ~200 times the bound.
    """
    devices, uses, rows = 8, 7, 4
    rng = np.random.default_rng(0)
    x = rng.integers(-4, 5, (devices, rows, 16)).astype(np.float64)
    x *= (2.0 ** np.arange(devices))[:, None, None]
    scale = rng.integers(1, 8, uses).astype(np.float64)  # the uses' own factors
    w = rng.integers(-3, 4, (16, 3)).astype(np.float32)

    def loss(w, x):
        total = 0.0
        for k in range(uses):  # each use casts the weight, as a module called again does
            y = (x * scale[k]).astype(jnp.bfloat16) @ w.astype(jnp.bfloat16)
            total = total + jnp.sum(y.astype(jnp.float32))
        return total, None

    mesh = step.make_mesh(jax.devices()[:devices])
    grad_fn = step.value_and_global_grad(loss, sum_grads_once=sum_grads_once)

    def per_device(w, x):
        (_, _), grads = grad_fn(w, x[0])
        return grads

    f = jax.jit(
        jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(step.MESH_AXIS)), out_specs=P())
    )
    got = np.asarray(f(jnp.asarray(w), jnp.asarray(x, jnp.float32)), np.float64)

    # d loss / d w[i, j] = Σ_d Σ_k scale_k Σ_rows x[d, r, i]: each (d, k) term exact in bfloat16.
    terms = scale[None, :, None] * x.sum(1)[:, None, :]  # [devices, uses, 16]
    assert np.all(terms.astype(jnp.bfloat16).astype(np.float64) == terms)
    want = np.repeat(terms.sum((0, 1))[:, None], 3, axis=1)
    bound = terms.shape[0] * terms.shape[1] * np.finfo(np.float32).eps * np.abs(terms).sum((0, 1))
    error = np.abs(got - want) / bound[:, None]
    if sum_grads_once:
        assert error.max() <= 1.0, error.max()
    else:
        # The default's bfloat16 sums: the test tells the two apart.
        assert error.max() > 10.0, error.max()
