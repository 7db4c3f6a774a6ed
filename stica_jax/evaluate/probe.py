"""Frozen-feature probes: a linear classifier or kNN on backbone features of a labelled set.

Used online while pretraining (UCF-101 when prepared, AV-digits in the demo) and for the demo's
final table. Features are the backbones' globally averaged last maps (512-d, before temporal
pooling and heads), averaged over the clips × crops (video) or sub-clips (audio) of each
example, computed by the model in inference mode, data-parallel over the mesh.
"""

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from data_pipeline.datasets import PreparedDataset
from stica_jax import step as step_lib


def make_feature_fn(graphdef: nnx.GraphDef, modality: str) -> Callable:
    """Jitted `(params, batch_stats, inputs) → [B, C]` features in inference mode.

    inputs: video `[B, V, T, S, S, 3]` (V clips × crops) or audio `[B, V, F, T, 1]` (V sub-clips).
    """

    def features(params, batch_stats, inputs):
        model = nnx.merge(graphdef, params, batch_stats, copy=True)
        model.eval()
        b, v = inputs.shape[:2]
        flat = inputs.reshape((b * v,) + inputs.shape[2:])
        if modality == "video":
            fmap = model.video_map(flat)
            feats = jnp.mean(fmap.astype(jnp.float32), axis=(1, 2, 3))
        elif modality == "audio":
            feats = jnp.mean(model.audio_map(flat).astype(jnp.float32), axis=(1, 2))
        else:
            raise ValueError(f"unknown modality {modality!r}")
        return jnp.mean(feats.reshape(b, v, -1), axis=1)

    return jax.jit(features)


def extract(
    feature_fn: Callable,
    params,
    batch_stats,
    batches: Iterable[dict[str, np.ndarray]],
    modality: str,
    mesh: jax.sharding.Mesh,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every real (mask True) example, gathered from all hosts."""
    feats, labels = [], []
    for batch in batches:
        local = {"x": batch[modality], "label": batch["label"], "mask": batch["mask"]}
        global_ = step_lib.global_batch(local, mesh)
        f = feature_fn(params, batch_stats, global_["x"])
        f, y, m = (
            multihost_utils.process_allgather(a, tiled=True)
            for a in (f, global_["label"], global_["mask"])
        )
        feats.append(np.asarray(f)[np.asarray(m)])
        labels.append(np.asarray(y)[np.asarray(m)])
    return np.concatenate(feats), np.concatenate(labels)


def linear_probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    c: float = 1.0,
) -> float:
    """Top-1 (%) of an L2-regularised logistic regression on standardised features."""
    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(scaler.transform(train_x), train_y)
    return 100.0 * float(np.mean(clf.predict(scaler.transform(test_x)) == test_y))


def knn_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *, k: int = 20
) -> float:
    """Top-1 (%) of a cosine-similarity k-nearest-neighbour majority vote."""

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    sims = unit(test_x) @ unit(train_x).T
    nearest = np.argsort(-sims, axis=1)[:, :k]
    votes = train_y[nearest]
    pred = np.array([np.bincount(v, minlength=train_y.max() + 1).argmax() for v in votes])
    return 100.0 * float(np.mean(pred == test_y))


PROBES = {"linear_probe": linear_probe_accuracy, "knn": knn_accuracy}


def probe(
    method: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> float:
    if method not in PROBES:
        raise ValueError(f"unknown probe {method!r}; expected one of {sorted(PROBES)}")
    return PROBES[method](*train, *test)


def eval_input_config(config: Any) -> dict[str, Any]:
    """The input pipeline's config for `config.eval`: its dataset, clips × crops, sub-clips."""
    ev = config.eval
    return dict(
        config.input.to_dict(),
        dataset=ev.dataset,
        eval_clips=ev.clips,
        eval_crops=ev.crops,
        audio_eval_subclips=ev.audio_subclips,
        audio_eval_seconds=config.input.audio_seconds,
    )


def probe_accuracies(
    config: Any,
    graphdef: nnx.GraphDef,
    states: dict[str, tuple[Any, Any]],
    dataset: PreparedDataset,
    mesh: jax.sharding.Mesh,
) -> dict[str, dict[str, float]]:
    """`{state_name: {modality: top-1}}` of `config.eval.method` on `config.eval.dataset`.

    `states` maps a name ("trained", "random init") to (params, batch_stats); `dataset` is
    `config.eval.dataset`, opened once (`stica_jax.data.open_eval_dataset`).
    """
    from data_pipeline import pipeline  # TensorFlow only when evaluating with real data.

    ev = config.eval
    input_config = eval_input_config(config)
    per_host = ev.batch_size // jax.process_count()
    results: dict[str, dict[str, float]] = {name: {} for name in states}
    for modality in ev.modalities:
        feature_fn = make_feature_fn(graphdef, modality)
        for name, (params, batch_stats) in states.items():
            splits = [
                extract(
                    feature_fn,
                    params,
                    batch_stats,
                    pipeline.make_dataset(
                        input_config,
                        f"{modality}_eval",
                        split=split,
                        dataset=dataset,
                        batch_size_per_host=per_host,
                    ),
                    modality,
                    mesh,
                )
                for split in (ev.train_split, ev.test_split)
            ]
            results[name][modality] = probe(ev.method, splits[0], splits[1])
    return results
