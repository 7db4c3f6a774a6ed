"""The STiCA loss against a NumPy reference written from the formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stica_jax.losses import cross_modal_nce, nce, stica_loss


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_nce(q, k, tau):
    """mean_i -log( exp(q_i·k_i/τ) / Σ_j exp(q_i·k_j/τ) )."""
    logits = q @ k.T / tau
    logits = logits - logits.max(1, keepdims=True)
    return float(np.mean(-np.diag(logits) + np.log(np.exp(logits).sum(1))))


def np_stica_loss(out, alpha=0.5, tau_av=0.1, tau_crop=0.5):
    (v1, v2), a = out["video"], out["audio"]
    l_av = np.mean([0.5 * (np_nce(v, a, tau_av) + np_nce(a, v, tau_av)) for v in (v1, v2)])
    terms = []
    for family in ("space", "time"):
        large, small = out["crops"][family]["large"], out["crops"][family]["small"]
        n_large = large.shape[2]
        for j in range(n_large):  # view-2 large crop j
            for k in range(n_large):  # view-1 large crop k
                terms.append(
                    0.5
                    * (
                        np_nce(large[1][:, j], large[0][:, k], tau_crop)
                        + np_nce(large[0][:, k], large[1][:, j], tau_crop)
                    )
                )
        for s in range(small.shape[1]):
            for k in range(n_large):
                terms.append(np_nce(small[:, s], large[0][:, k], tau_crop))
    return (1 - alpha) * np.mean(terms) + alpha * l_av, l_av, np.mean(terms)


def random_outputs(b=6, d=8, seed=0):
    rng = np.random.default_rng(seed)

    def u(*s):
        return _unit(rng.standard_normal(s + (d,))).astype(np.float32)

    return {
        "video": u(2, b),
        "audio": u(b),
        "crops": {
            "space": {"large": u(2, b, 2), "small": u(b, 3)},
            "time": {"large": u(2, b, 2), "small": u(b, 1)},
        },
    }


def test_loss_equals_numpy_reference():
    out = random_outputs()
    loss, aux = stica_loss(out)
    ref, ref_av, ref_crops = np_stica_loss(out)
    np.testing.assert_allclose(float(aux["loss_av"]), ref_av, rtol=1e-5)
    np.testing.assert_allclose(float(aux["loss_crops"]), ref_crops, rtol=1e-5)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)


def test_without_crops_the_loss_is_the_cross_modal_term():
    out = random_outputs()
    del out["crops"]
    loss, aux = stica_loss(out)
    np.testing.assert_allclose(float(loss), np_stica_loss(random_outputs())[1], rtol=1e-5)


def test_hand_checkable_values():
    # Orthogonal one-hot embeddings, perfectly aligned: NCE = log(1 + (B-1)·e^{-1/τ}).
    b, tau = 4, 0.5
    z = jnp.eye(b)
    expected = np.log(1 + (b - 1) * np.exp(-1 / tau))
    np.testing.assert_allclose(float(nce(z, z, temperature=tau)), expected, rtol=1e-5)
    # All embeddings identical: the positive is no better than any negative → log B.
    same = jnp.ones((b, 3)) / np.sqrt(3)
    np.testing.assert_allclose(float(nce(same, same, temperature=tau)), np.log(b), rtol=1e-5)


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
        # Any other audio embeddings are worse than the aligned ones too.
        other = jnp.asarray(_unit(rng.standard_normal((b, 16))), jnp.float32)
        assert float(cross_modal_nce(jnp.stack([z, z]), other)) > aligned


def test_detach_keys_keeps_the_value_and_drops_the_key_gradient():
    out = random_outputs()

    def f(a, detach):
        return cross_modal_nce(jnp.asarray(out["video"]), a, detach_keys=detach)

    a = jnp.asarray(out["audio"])
    assert float(f(a, True)) == pytest.approx(float(f(a, False)))
    g_full, g_detached = jax.grad(f)(a, False), jax.grad(f)(a, True)
    assert not np.allclose(g_full, g_detached)
