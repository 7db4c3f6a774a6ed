"""The STiCA loss (paper eq. 7): cross-modal NCE plus within-modal feature-crop NCE; and the
cross-entropy of supervised training (seed Table 8), with or without feature crops.

Every function works on the *local* shard of the global batch. With `axis_name` set (inside
`jax.shard_map` over the `data` mesh axis) the keys are all-gathered, so the negatives of each
query are all other keys of the global batch, and the returned loss is the global mean
(`pmean` of the local means — every shard holds the same number of samples). With
`axis_name=None` the local batch is the global batch. Gradients flow through the gathered keys
(all_gather's transpose) unless `detach_keys` (the official code's behaviour, spec §6).
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from stica_jax.crops import FAMILIES


def _at_least_f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _global_keys(
    keys: jax.Array, axis_name: str | None, detach: bool
) -> tuple[jax.Array, jax.Array]:
    """All keys of the global batch `[B_global, ...]` and the global index of local row 0."""
    if detach:
        keys = jax.lax.stop_gradient(keys)
    if axis_name is None:
        return keys, jnp.zeros((), jnp.int32)
    offset = jax.lax.axis_index(axis_name) * keys.shape[0]
    return jax.lax.all_gather(keys, axis_name, axis=0, tiled=True), offset


def pairwise_nce(
    queries: jax.Array,
    keys: jax.Array,
    *,
    temperature: float,
    axis_name: str | None = None,
    detach_keys: bool = False,
) -> jax.Array:
    """InfoNCE of every query set against every key set, averaged over the local batch.

    Args:
      queries: `[B, Q, D]` unit vectors; query set q of sample i has positive key i.
      keys: `[B, K, D]` unit vectors; negatives are the other samples of key set k.
    Returns:
      `[Q, K]`: entry (q, k) is the mean over local samples i of
      `-log softmax_j(<queries[i, q], keys[j, k]> / temperature)[i]`, j over the global batch.
    """
    all_keys, offset = _global_keys(keys, axis_name, detach_keys)
    logits = (
        jnp.einsum("iqd,jkd->qkij", _at_least_f32(queries), _at_least_f32(all_keys)) / temperature
    )
    labels = offset + jnp.arange(queries.shape[0])
    positive = jnp.take_along_axis(logits, labels[None, None, :, None], axis=-1)[..., 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - positive, axis=-1)


def nce(
    queries: jax.Array,
    keys: jax.Array,
    *,
    temperature: float,
    axis_name: str | None = None,
    detach_keys: bool = False,
) -> jax.Array:
    """InfoNCE of `[B, D]` queries against `[B, D]` keys (positive i ↔ i), local mean."""
    return pairwise_nce(
        queries[:, None],
        keys[:, None],
        temperature=temperature,
        axis_name=axis_name,
        detach_keys=detach_keys,
    )[0, 0]


def cross_modal_nce(
    z_video: jax.Array,
    z_audio: jax.Array,
    *,
    temperature: float = 0.1,
    axis_name: str | None = None,
    detach_keys: bool = False,
) -> jax.Array:
    """`mean_v ½[NCE(v→a) + NCE(a→v)]` over the views `z_video [V, B, D]`, audio `[B, D]`."""
    kw = dict(temperature=temperature, axis_name=axis_name, detach_keys=detach_keys)
    terms = [0.5 * (nce(z_v, z_audio, **kw) + nce(z_audio, z_v, **kw)) for z_v in z_video]
    return jnp.mean(jnp.stack(terms))


CROP_PAIRINGS = ("official", "all")


def num_crop_terms(n_large: int, n_small: int, pairing: str) -> int:
    """How many NCE terms `crop_nce_terms` returns for one family with these crop counts."""
    if pairing == "official":
        # Official `nce_crop_losses_dual`: a family enters the loss only when it has a small
        # crop or a second large crop; then one large↔large term if there is a crop index 1.
        if n_small == 0 and n_large < 2:
            return 0
        return int(n_large >= 2) + n_large * n_small
    if pairing == "all":
        return n_large * n_large + n_large * n_small
    raise ValueError(f"unknown crop pairing {pairing!r}; expected one of {list(CROP_PAIRINGS)}")


def crop_nce_terms(
    large: jax.Array,
    small: jax.Array | None,
    *,
    pairing: str = "official",
    temperature: float = 0.5,
    axis_name: str | None = None,
    detach_keys: bool = False,
) -> jax.Array:
    """All within-modal NCE terms of one crop family, as a flat vector (local means).

    Args:
      large: `[2, B, L, D]` large crops of view 1 and view 2.
      small: `[B, S, D]` small crops of view 2, or None.
      pairing: which large crops are contrasted (spec §6):
        "official" (the official `main_stica.py`, `nce_crop_losses_dual`): when `L >= 2`, ONE
        symmetric term `½[NCE(v2_1→v1_1) + NCE(v1_1→v2_1)]` between large crop 1 of each view;
        then `L·S` terms `NCE(v2 small_s → v1 large_l)` with the large crop detached (the
        official code detaches it whatever happens to the other keys). A family with one large
        and no small crop gives no term, as there.
        "all": `L·L` symmetric terms `½[NCE(v2_j→v1_l) + NCE(v1_l→v2_j)]`, then the `L·S`
        small→large terms (keys detached only with `detach_keys`).
      detach_keys: stop gradients through every key (queries carry the gradient).
    Returns:
      `[num_crop_terms(L, S, pairing)]` large↔large terms first, then small→large ones in
      (large, small) order.
    """
    n_large = large.shape[2]
    if num_crop_terms(n_large, 0 if small is None else small.shape[1], pairing) == 0:
        return jnp.zeros((0,), jnp.float32)
    kw = dict(temperature=temperature, axis_name=axis_name, detach_keys=detach_keys)
    v1_large, v2_large = large[0], large[1]
    if pairing == "all":
        large_large = 0.5 * (
            pairwise_nce(v2_large, v1_large, **kw) + pairwise_nce(v1_large, v2_large, **kw).T
        )
        small_keys = v1_large
    else:  # "official"
        index_1 = v1_large[:, 1:2], v2_large[:, 1:2]  # empty when L == 1
        large_large = 0.5 * (
            pairwise_nce(index_1[1], index_1[0], **kw) + pairwise_nce(index_1[0], index_1[1], **kw)
        )
        small_keys = jax.lax.stop_gradient(v1_large)
    terms = [large_large.reshape(-1)]
    if small is not None:
        # [S, L] → (large, small) order, the official loop order.
        terms.append(pairwise_nce(small, small_keys, **kw).T.reshape(-1))
    return jnp.concatenate(terms)


def stica_loss(
    outputs: dict[str, Any],
    *,
    cross_modal_weight: float = 0.5,
    av_temperature: float = 0.1,
    crop_temperature: float = 0.5,
    crop_pairs: str = "official",
    axis_name: str | None = None,
    detach_keys: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`L = (1-α)·L_crops + α·L_av` (α = 0.5), or `L_av` alone when the model has no crops.

    `L_crops` is the mean of every crop family's terms (`crop_nce_terms` with `crop_pairs`), each
    term weighing the same, as the official `sum(crop_losses) / sum(counters)`.

    Args:
      outputs: the dict returned by `STiCA.__call__` (local shard).
      crop_pairs: "official" or "all" (see `crop_nce_terms`).
    Returns:
      The global-batch loss (identical on every device) and its terms for logging:
      `loss_av`, `loss_crops`, `loss_crops_<family>`, and `av_top1` (top-1 accuracy of
      retrieving each clip's audio among the global batch from its first view).
    """
    kw = dict(axis_name=axis_name, detach_keys=detach_keys)
    loss_av = cross_modal_nce(outputs["video"], outputs["audio"], temperature=av_temperature, **kw)
    aux = {"loss_av": loss_av}
    crops = outputs.get("crops")
    if crops:
        per_family = {
            f: crop_nce_terms(
                crops[f]["large"],
                crops[f].get("small"),
                pairing=crop_pairs,
                temperature=crop_temperature,
                **kw,
            )
            for f in FAMILIES
            if f in crops
        }
        per_family = {f: terms for f, terms in per_family.items() if terms.size}
        if not per_family:
            raise ValueError(
                f"crop_pairs={crop_pairs!r} contrasts no crops with these counts (it needs a "
                "small crop or two large ones in a family); add crops or disable them"
            )
        for f, terms in per_family.items():
            aux[f"loss_crops_{f}"] = jnp.mean(terms)
        loss_crops = jnp.mean(jnp.concatenate(list(per_family.values())))
        aux["loss_crops"] = loss_crops
        loss = (1.0 - cross_modal_weight) * loss_crops + cross_modal_weight * loss_av
    else:
        loss = loss_av
    all_audio, offset = _global_keys(outputs["audio"], axis_name, True)
    sims = _at_least_f32(outputs["video"][0]) @ _at_least_f32(all_audio).T
    aux["av_top1"] = jnp.mean(jnp.argmax(sims, -1) == offset + jnp.arange(sims.shape[0]))
    aux = {k: _at_least_f32(v) for k, v in aux.items()}
    if axis_name is not None:
        loss, aux = jax.lax.pmean((loss, aux), axis_name)
    return loss, aux


def classification_loss(
    logits: jax.Array,
    labels: jax.Array,
    crop_logits: jax.Array | None = None,
    *,
    crop_loss_weight: float = 0.5,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Supervised loss: `(1-w)·CE(full clip) + w·mean_crops CE(crop)`, or the full-clip CE alone.

    Every feature crop is classified against its clip's label, and the crops' mean CE weighs
    `w = crop_loss_weight` (0.5: the same even split between the full-clip and the crop terms
    as the pretraining loss's `cross_modal_weight`; our reading of seed Table 8, which does not
    state the loss).

    Args:
      logits: `[B, K]` full-clip logits (local shard); labels: `[B]` int class ids.
      crop_logits: `[B, n, K]` logits of the n feature crops of each clip, or None.
    Returns:
      The global-batch loss (identical on every device with `axis_name`) and, for logging,
      `loss_ce` (full clip), `top1` (training top-1 of the full clip), and with crops
      `loss_crops` and `crops_top1`.
    """
    ce = optax.losses.softmax_cross_entropy_with_integer_labels
    logits = _at_least_f32(logits)
    loss_ce = jnp.mean(ce(logits, labels))
    aux = {"loss_ce": loss_ce, "top1": jnp.mean(jnp.argmax(logits, -1) == labels)}
    if crop_logits is not None:
        crop_logits = _at_least_f32(crop_logits)
        crop_labels = jnp.broadcast_to(labels[:, None], crop_logits.shape[:2])
        loss_crops = jnp.mean(ce(crop_logits, crop_labels))
        aux["loss_crops"] = loss_crops
        aux["crops_top1"] = jnp.mean(jnp.argmax(crop_logits, -1) == crop_labels)
        loss = (1.0 - crop_loss_weight) * loss_ce + crop_loss_weight * loss_crops
    else:
        loss = loss_ce
    aux = {k: _at_least_f32(v) for k, v in aux.items()}
    if axis_name is not None:
        loss, aux = jax.lax.pmean((loss, aux), axis_name)
    return loss, aux
