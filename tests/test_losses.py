"""The STiCA loss (spec §6) against a transcription of the official code's loss.

`official_loss` below transcribes facebookresearch/GDT `main_stica.py`: `gdt_loss`,
`nce_crop_losses_dual` and the loss lines of `train` (`loss_crops = sum(crop_losses) /
sum(counters)`, `loss_av = 0.5 * (gdt_loss(v1, a) + gdt_loss(v2, a))`, `loss = (1 - α) ·
loss_crops + α · loss_av`), on one process (`dist_collect_other` adds no keys). It runs on
NumPy for values and on torch for gradients: `detach` is the code's `.detach()`.
The spec's earlier reading (`crop_pairs="all"`) has its own NumPy reference, `all_pairs_loss`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from configs import sota
from stica_jax import step
from stica_jax.losses import cross_modal_nce, nce, num_crop_terms, stica_loss

B, D = 8, 16
SOTA_COUNTS = {"space": (2, 4), "time": (2, 1)}  # seed §6.1.1: space 2×6²+4×4², time 2×3+1×2


# --- the official loss, transcribed ----------------------------------------------------------


def _numpy_xe(logits):
    """torch.nn.CrossEntropyLoss()(logits, arange(len(logits))) in NumPy (float64)."""
    logits = np.asarray(logits, np.float64)
    top = logits.max(1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(1))
    return float(np.mean(lse - np.diag(logits)))


def _torch_xe(logits):
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(logits)))


def gdt_loss(feat_v, feat_a, xe, detach, symmetric=True, temp=0.1):
    """`main_stica.gdt_loss`: keys `cat((feat, feat_other), 0).detach()`, queries attached."""
    v_other = detach(feat_v)
    loss_nce_av = xe(feat_a @ v_other.T / temp)
    if not symmetric:
        return loss_nce_av
    a_other = detach(feat_a)
    loss_nce_va = xe(feat_v @ a_other.T / temp)
    return 0.5 * (loss_nce_av + loss_nce_va)


def nce_crop_losses_dual(feats_v, feats_v2, xe, detach, key_detach, s_large, s_small, t_large,
                         t_small, temp):  # fmt: skip
    """`main_stica.nce_crop_losses_dual`; `feats[family][large/small][i]` are `[B, D]`.

    `detach` is the explicit `large_crop.detach()`; `key_detach` the one inside `gdt_loss`.
    """
    assert s_large <= 2 and t_large <= 2
    losses, counter = [0.0] * 4, [0] * 4
    for family, (n_large, n_small) in enumerate(((s_large, s_small), (t_large, t_small))):
        if n_small > 0 or n_large > 1:
            for i in range(n_large):
                large_crop = feats_v[family][0][i]
                if i == 1:
                    losses[2 * family] += gdt_loss(
                        feats_v2[family][0][i], large_crop, xe, key_detach, temp=temp
                    )
                    counter[2 * family] += 1
                for j in range(n_small):
                    small_crop = feats_v2[family][1][j]
                    losses[2 * family + 1] += gdt_loss(
                        detach(large_crop), small_crop, xe, key_detach, symmetric=False, temp=temp
                    )
                    counter[2 * family + 1] += 1
    return losses, counter


def crop_counts(out):
    """{family: (n_large, n_small)} of an output dict (a kind with count 0 is absent)."""
    return {
        f: (c["large"].shape[2], c["small"].shape[1] if "small" in c else 0)
        for f, c in out["crops"].items()
    }


def official_loss(out, xe, detach, key_detach, alpha=0.5, temp=0.5):
    """`main_stica.train`'s loss from our model's output dict (see `outputs`)."""
    (v1, v2), a = out["video"], out["audio"]
    counts = crop_counts(out)

    def per_view(view):
        # feats[family][0]: this view's large crops; [1]: small crops (only view 2's are used).
        return [
            [
                [out["crops"][f]["large"][view][:, i] for i in range(counts[f][0])],
                [out["crops"][f]["small"][:, j] for j in range(counts[f][1])] if view else [],
            ]
            for f in ("space", "time")
        ]

    crop_losses, counters = nce_crop_losses_dual(
        per_view(0), per_view(1), xe, detach, key_detach,
        *counts["space"], *counts["time"], temp=temp,
    )  # fmt: skip
    loss_crops = sum(crop_losses) / sum(counters)
    loss_av = 0.5 * (gdt_loss(v1, a, xe, key_detach) + gdt_loss(v2, a, xe, key_detach))
    return (1.0 - alpha) * loss_crops + alpha * loss_av, loss_crops, loss_av


def numpy_official_loss(out):
    def identity(x):
        return x

    return official_loss(out, _numpy_xe, identity, identity)


# --- the spec's earlier reading ("all"), from spec §6's text -------------------------------


def all_pairs_loss(out, alpha=0.5, tau_av=0.1, tau_crop=0.5):
    (v1, v2), a = out["video"], out["audio"]
    l_av = np.mean([0.5 * (_nce(v, a, tau_av) + _nce(a, v, tau_av)) for v in (v1, v2)])
    terms = []
    for family in ("space", "time"):
        large, n_small = out["crops"][family]["large"], crop_counts(out)[family][1]
        for j in range(large.shape[2]):  # every view-2 large crop ...
            for k in range(large.shape[2]):  # ... against every view-1 large crop, symmetric
                terms.append(
                    0.5 * (_nce(large[1][:, j], large[0][:, k], tau_crop)
                           + _nce(large[0][:, k], large[1][:, j], tau_crop))
                )  # fmt: skip
        for s in range(n_small):
            for k in range(large.shape[2]):
                terms.append(_nce(out["crops"][family]["small"][:, s], large[0][:, k], tau_crop))
    return (1 - alpha) * np.mean(terms) + alpha * l_av, np.mean(terms), l_av


def _nce(q, k, tau):
    """mean_i -log(exp(q_i·k_i/τ) / Σ_j exp(q_i·k_j/τ))."""
    return _numpy_xe(q @ k.T / tau)


# --- inputs ---------------------------------------------------------------------------------


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def outputs(seed=0, counts=SOTA_COUNTS, aligned_pair=True):
    """A model output dict (`STiCA.__call__`'s layout) with SOTA crop counts.

    With `aligned_pair`, large crop 1 is the same in both views while crop 0 is unrelated, so
    the official pairing (crop 1 ↔ crop 1 only) and "all" (every pair) give different losses.
    """
    rng = np.random.default_rng(seed)

    def u(*shape):
        return _unit(rng.standard_normal(shape + (D,))).astype(np.float32)

    crops = {}
    for family, (n_large, n_small) in counts.items():
        large = u(2, B, n_large)
        if aligned_pair and n_large > 1:
            large[1, :, 1] = large[0, :, 1]
        crops[family] = {"large": large}
        if n_small:
            crops[family]["small"] = u(B, n_small)
    return {"video": u(2, B), "audio": u(B), "crops": crops}


def _loss(out, **kw):
    # Jitted: run op by op, every small op is its own compile (~50 s a test on 2 busy cores).
    loss, aux = jax.jit(functools.partial(stica_loss, **kw))(jax.tree.map(jnp.asarray, out))
    return float(loss), float(aux["loss_crops"]), float(aux["loss_av"])


# --- tests ----------------------------------------------------------------------------------


def test_sota_config_loss_equals_the_official_code_to_1e6():
    config = sota.get_config()
    assert (config.loss.crop_pairs, config.loss.detach_keys) == ("official", True)
    loss_config = step.LossConfig.from_config(config.loss)
    out = outputs()
    got = _loss(out, **{k: v for k, v in vars(loss_config).items()})
    want = numpy_official_loss(out)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_all_pairs_equals_its_reference_and_the_two_pairings_differ():
    out = outputs()
    official, all_pairs = numpy_official_loss(out), all_pairs_loss(out)
    np.testing.assert_allclose(_loss(out, crop_pairs="all"), all_pairs, rtol=0, atol=1e-6)
    # The inputs tell the pairings apart: the crop terms differ by far more than the tolerance.
    assert abs(official[1] - all_pairs[1]) > 0.05  # measured 0.068
    np.testing.assert_allclose(official[2], all_pairs[2], rtol=1e-12)  # same cross-modal term


def test_official_pairing_counts_the_official_terms():
    # Spec §6: SOTA 1 + 8 spatial, 1 + 2 temporal = 12 terms ("all": 18), and the official
    # code's own counters agree for every crop count it allows (at most 2 large crops).
    counts = SOTA_COUNTS.values()
    assert sum(num_crop_terms(n_l, n_s, "official") for n_l, n_s in counts) == 12
    assert sum(num_crop_terms(n_l, n_s, "all") for n_l, n_s in counts) == 18
    zero = np.zeros((B, D))
    for n_large in (1, 2):
        for n_small in range(5):
            feats = [[[zero] * n_large, [zero] * n_small]] * 2

            def no_loss(logits):
                return 0.0

            def identity(x):
                return x

            _, counters = nce_crop_losses_dual(
                feats, feats, no_loss, identity, identity, n_large, n_small, 0, 0, temp=0.5
            )
            assert num_crop_terms(n_large, n_small, "official") == sum(counters)


@pytest.mark.parametrize(
    "counts",
    [
        {"space": (2, 0), "time": (2, 0)},  # the demo: large↔large only
        {"space": (1, 3), "time": (2, 1)},  # no crop index 1 in space: small→large only
        {"space": (2, 4), "time": (1, 0)},  # time gives no term
    ],
)
def test_official_pairing_matches_the_official_code_for_other_crop_counts(counts):
    out = outputs(seed=3, counts=counts)
    got = _loss(out, crop_pairs="official", detach_keys=True)
    np.testing.assert_allclose(got, numpy_official_loss(out), rtol=0, atol=1e-6)


@pytest.mark.parametrize("detach_keys", [True, False])
def test_gradients_equal_torch_autograd_of_the_official_code(detach_keys):
    """Where `.detach()` sits decides the gradient: attached keys roughly double it."""
    out = outputs(seed=1)

    def jax_loss(o):
        return stica_loss(o, crop_pairs="official", detach_keys=detach_keys)[0]

    got = jax.jit(jax.grad(jax_loss))(jax.tree.map(jnp.asarray, out))
    leaves = jax.tree.map(
        lambda x: torch.tensor(np.asarray(x, np.float64), requires_grad=True), out
    )

    def key_detach(x):
        return x.detach() if detach_keys else x

    loss, _, _ = official_loss(leaves, _torch_xe, lambda x: x.detach(), key_detach)
    loss.backward()
    want = jax.tree.map(lambda t: t.grad.numpy(), leaves)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)
    # Not vacuous: every embedding that enters the loss gets a gradient.
    assert np.abs(got["crops"]["space"]["small"]).max() > 1e-3


def test_official_pairing_on_four_devices_equals_the_official_code_on_the_global_batch():
    from jax.sharding import Mesh, PartitionSpec as P

    out = outputs(seed=2)
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    specs = {
        "video": P(None, "data"),
        "audio": P("data"),
        "crops": {f: {"large": P(None, "data"), "small": P("data")} for f in SOTA_COUNTS},
    }

    def per_device(o):
        return stica_loss(o, crop_pairs="official", detach_keys=True, axis_name="data")[0]

    sharded = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(specs,), out_specs=P()))
    got = float(sharded(jax.tree.map(jnp.asarray, out)))
    np.testing.assert_allclose(got, numpy_official_loss(out)[0], rtol=0, atol=1e-6)


def test_the_cross_modal_weight_splits_the_loss_as_the_official_alpha():
    """`(1-α)·L_crops + α·L_av` at α other than the even split, where swapping the two weights
    or dropping a term shows (at α = 0.5 a swap is invisible)."""
    out = outputs()

    def identity(x):
        return x

    _, crops, av = numpy_official_loss(out)
    assert abs(crops - av) > 0.1  # the two terms tell a swap apart
    for alpha in (0.0, 0.7, 1.0):
        want = official_loss(out, _numpy_xe, identity, identity, alpha=alpha)
        np.testing.assert_allclose(
            _loss(out, cross_modal_weight=alpha), want, rtol=0, atol=1e-6, err_msg=f"{alpha=}"
        )


def test_hand_checkable_values():
    # Orthogonal one-hot embeddings, perfectly aligned: NCE = log(1 + (B-1)·e^{-1/τ}).
    b, tau = 4, 0.5
    z = jnp.eye(b)
    expected = np.log(1 + (b - 1) * np.exp(-1 / tau))
    np.testing.assert_allclose(float(nce(z, z, temperature=tau)), expected, rtol=1e-5)
    # All embeddings identical: the positive is no better than any negative → log B.
    same = jnp.ones((b, 3)) / np.sqrt(3)
    np.testing.assert_allclose(float(nce(same, same, temperature=tau)), np.log(b), rtol=1e-5)


def test_without_crops_the_loss_is_the_cross_modal_term():
    out = outputs()
    del out["crops"]
    loss, aux = stica_loss(jax.tree.map(jnp.asarray, out))
    np.testing.assert_allclose(float(loss), numpy_official_loss(outputs())[2], atol=1e-6)


def test_perfect_alignment_is_the_minimum_and_permuting_audio_raises_the_loss():
    rng = np.random.default_rng(1)
    b = 8
    z = jnp.asarray(_unit(rng.standard_normal((b, 16))), jnp.float32)
    aligned = float(cross_modal_nce(jnp.stack([z, z]), z))
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(b)
        if (perm == np.arange(b)).all():
            continue
        assert float(cross_modal_nce(jnp.stack([z, z]), z[perm])) > aligned
        other = jnp.asarray(_unit(rng.standard_normal((b, 16))), jnp.float32)
        assert float(cross_modal_nce(jnp.stack([z, z]), other)) > aligned


def test_unknown_pairing_and_a_pairing_with_no_terms_are_named():
    out = jax.tree.map(jnp.asarray, outputs())
    with pytest.raises(ValueError, match="unknown crop pairing 'some'"):
        stica_loss(out, crop_pairs="some")
    lone = jax.tree.map(jnp.asarray, outputs(counts={"space": (1, 0), "time": (1, 0)}))
    with pytest.raises(ValueError, match="crop_pairs='official' contrasts no crops"):
        stica_loss(lone, crop_pairs="official")
