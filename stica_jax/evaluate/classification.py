"""Top-1 of a supervised `VideoClassifier` on a labelled split (spec §10's test protocol).

Each video is seen as `config.eval.clips` evenly spaced clips × `config.eval.crops` spatial
crops (the pipeline's "video_eval" batches); their logits are averaged and the argmax is the
prediction. The model runs in inference mode (BatchNorm running statistics, no dropout, no
feature crops), data-parallel over the mesh; examples are gathered from all hosts.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from data_pipeline.datasets import PreparedDataset
from stica_jax.evaluate.metrics import topk_accuracy
from stica_jax.evaluate.probe import eval_input_config, extract


def make_logits_fn(graphdef: nnx.GraphDef) -> Callable:
    """Jitted `(params, batch_stats, video [B, V, T, S, S, 3]) → [B, K]` logits averaged over V."""

    def logits(params, batch_stats, video):
        model = nnx.merge(graphdef, params, batch_stats, copy=True)
        model.eval()
        b, v = video.shape[:2]
        flat = model(video.reshape((b * v,) + video.shape[2:]))
        return jnp.mean(flat.reshape(b, v, -1), axis=1)

    return jax.jit(logits)


def top1_accuracies(
    config: Any,
    graphdef: nnx.GraphDef,
    states: dict[str, tuple[Any, Any]],
    dataset: PreparedDataset,
    mesh: jax.sharding.Mesh,
) -> dict[str, dict[str, float]]:
    """`{state_name: {"video": top-1 %}}` on `config.eval.dataset`, split `eval.test_split`.

    `states` maps a name ("trained", "random init") to (params, batch_stats); `dataset` is
    `config.eval.dataset`, opened once (`stica_jax.data.open_eval_dataset`). The table has
    the layout of `probe.probe_accuracies`, so the trainer reports both the same way.
    """
    from data_pipeline import pipeline  # TensorFlow only when evaluating with real data.

    ev = config.eval
    logits_fn = make_logits_fn(graphdef)
    results = {}
    for name, (params, batch_stats) in states.items():
        batches = pipeline.make_dataset(
            eval_input_config(config),
            "video_eval",
            split=ev.test_split,
            dataset=dataset,
            batch_size_per_host=ev.batch_size // jax.process_count(),
        )
        logits, labels = extract(logits_fn, params, batch_stats, batches, "video", mesh)
        results[name] = {"video": topk_accuracy(logits, labels, 1)}
    return results
