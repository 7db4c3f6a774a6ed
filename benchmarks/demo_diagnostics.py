"""Why does (or doesn't) a pretraining config learn cross-modal correspondence? Numbers, fast.

    python -m benchmarks.demo_diagnostics --config=configs/demo.py --steps=100 \
        [--config.av_digits="{'digit_scale': (0.8, 0.9)}" ...] [--fixed_batch] [--data_dir=DIR] \
        [--embedding_stats]

Prints, for the config's model at random init on one batch of `--probe_batch` training clips:
the leave-one-out 1-NN digit accuracy and the mean cosine similarity of same-digit vs
different-digit pairs, for the audio and video backbone features and embeddings (how much a
random tower already "knows" — a teacher the other tower could learn from). Then it runs
`--steps` real train steps (the production step, SGD and all) and prints every
`--every` steps the mean loss terms, `av_top1` (retrieving each clip's audio among the batch
from its video; chance = 1/batch) and the gradient norm. `--fixed_batch` repeats one batch:
a working step must overfit it (loss_av → 0), which separates "the step is broken" from "the
correspondence is hard to find". `--embedding_stats` adds, at each print, how alike the
embeddings of different clips are (mean cosine: 1 = every clip the same), matched against
unmatched video-audio similarities, the digit 1-NN accuracy of each tower's embeddings and the
norm of each head's output bias: how the cross-modal loss sits at chance. Findings on the demo
are in docs/demo.md.
"""

import time

from absl import flags
from ml_collections import config_flags

from stica_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Pretraining config.")
_STEPS = flags.DEFINE_integer("steps", 100, "Train steps to run.")
_EVERY = flags.DEFINE_integer("every", 10, "Print the mean metrics every this many steps.")
_FIXED = flags.DEFINE_bool("fixed_batch", False, "Repeat the first batch (overfit check).")
_PROBE_BATCH = flags.DEFINE_integer("probe_batch", 256, "Clips for the random-init statistics.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Overrides config.data_dir.")
_EMBED_STATS = flags.DEFINE_bool(
    "embedding_stats",
    False,
    "Also print, every --every steps, statistics of the embeddings of 64 fixed training clips "
    "(BatchNorm in training mode): the mean cosine between different clips (1 = collapsed), "
    "matched vs unmatched video-audio cosines, and the share of the head's output bias.",
)


def _separability(z, labels):
    """(1-NN accuracy, mean cos same label, mean cos different label) of rows `z`."""
    import numpy as np

    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sims = z @ z.T
    np.fill_diagonal(sims, -np.inf)
    same = labels[:, None] == labels[None]
    off = ~np.eye(len(labels), dtype=bool)
    return ((labels[sims.argmax(1)] == labels).mean(), sims[same & off].mean(), sims[~same].mean())


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from data_pipeline import pipeline
    from data_pipeline.tensorflow_cpu import tf  # noqa: F401 - hides GPUs from TF first.
    from stica_jax import data, step as step_lib, train

    config = _CONFIG.value
    if _DATA_DIR.value is not None:
        config.data_dir = _DATA_DIR.value
    if config.mode != "pretrain":
        raise train.ConfigError("demo_diagnostics needs a pretraining config (mode='pretrain')")
    data.resolve_av_digits(config)
    train_data = data.open_run_dataset(config, config.input.dataset)

    # -- What the towers know at random init ----------------------------------------------------
    probe = config.copy_and_resolve_references()
    probe.model.head_dropout = 0.0  # dropout needs per-sample keys; the statistics don't
    batch = next(
        pipeline.make_dataset(
            probe.input,
            "pretrain",
            split=probe.train_split,
            dataset=train_data,
            batch_size_per_host=_PROBE_BATCH.value,
            seed=probe.seed,
        )
    )
    model = train.build_train_model(probe, axis_name=None, rngs=nnx.Rngs(probe.seed))
    probe_graph = nnx.graphdef(model)  # no axis name: usable outside the step's shard_map
    probe_clips = {k: jnp.asarray(batch[k][:64]) for k in ("video1", "audio")}
    labels = np.asarray(batch["label"])
    amap = model.audio_map(jnp.asarray(batch["audio"]))
    vmap = model.video_map(jnp.asarray(batch["video1"]))
    rows = {
        "audio features": jnp.mean(amap, (1, 2)),
        "audio embedding": model.embed_audio_map(amap, None),
        "video features": jnp.mean(vmap, (1, 2, 3)),
        "video embedding": model.embed_video_map(vmap, None),
    }
    print(f"random init, {len(labels)} training clips (chance 1-NN ≈ 0.10):")
    for name, z in rows.items():
        acc, same, diff = _separability(np.asarray(z, np.float64), labels)
        print(
            f"  {name:<16} 1-NN digit acc {acc:.3f}   cos same digit {same:.3f}  "
            f"different {diff:.3f}",
            flush=True,
        )

    # -- The production step ----------------------------------------------------------------
    num_examples = train.num_train_examples(config, train_data)
    mesh = step_lib.make_mesh()
    model, optimizer, state = train.create_train_state(config, num_examples=num_examples)
    state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    train_step = step_lib.make_train_step(
        nnx.graphdef(model), optimizer, step_lib.loss_config_for(config), mesh
    )
    batches = train.host_batches(config, train_data, 0)
    fixed = step_lib.global_batch(next(batches), mesh) if _FIXED.value else None
    rng = jax.random.key(config.seed)
    print(
        f"train steps (batch {config.global_batch_size}: chance av_top1 "
        f"{1 / config.global_batch_size:.3f}, loss_av at chance log B = "
        f"{np.log(config.global_batch_size):.3f}){' on ONE repeated batch' if fixed else ''}:"
    )

    def embedding_stats(state):
        """Statistics of the embeddings of the first 64 probe clips, BatchNorm in train mode."""
        local = jax.tree.map(lambda x: jnp.array(np.asarray(x)), (state.params, state.batch_stats))
        m = nnx.merge(probe_graph, *local)
        m.train()
        vmap_ = m.video_map(probe_clips["video1"])
        pooled = m.video_pooling(jnp.mean(vmap_, axis=(2, 3)))
        v = np.asarray(m.embed_video_map(vmap_, None), np.float64)
        a = np.asarray(m.embed_audio_map(m.audio_map(probe_clips["audio"]), None), np.float64)
        off = ~np.eye(len(v), dtype=bool)

        def cos_off(z):
            z = z / np.linalg.norm(z, axis=1, keepdims=True)
            return (z @ z.T)[off].mean()

        va = v @ a.T
        nn_v = _separability(v, labels[:64])[0]
        nn_a = _separability(a, labels[:64])[0]
        out = {
            "1nn v": nn_v,
            "1nn a": nn_a,
            "cos pooled": cos_off(np.asarray(pooled, np.float64)),
            "cos v": cos_off(v),
            "cos a": cos_off(a),
            "va match": np.diag(va).mean(),
            "va other": va[off].mean(),
        }
        for name, head in (("bias v", m.video_head), ("bias a", m.audio_head)):
            out[name] = float(np.linalg.norm(head.fc2.bias[...]))
        return out

    history, t0 = [], time.time()
    for i in range(_STEPS.value):
        batch = fixed if fixed is not None else step_lib.global_batch(next(batches), mesh)
        state, metrics = train_step(state, batch, rng)
        history.append(metrics)
        if (i + 1) % _EVERY.value == 0 or i + 1 == _STEPS.value:
            got = jax.device_get(history)
            history = []
            names = [
                k for k in got[0] if k in ("loss", "loss_av", "loss_crops", "av_top1", "grad_norm")
            ]
            print(
                f"  step {i + 1:4d}  "
                + "  ".join(f"{k} {np.mean([m[k] for m in got]):.3f}" for k in names)
                + f"  ({time.time() - t0:.0f} s)",
                flush=True,
            )
            if _EMBED_STATS.value:
                print(
                    "             "
                    + "  ".join(f"{k} {v:.3f}" for k, v in embedding_stats(state).items()),
                    flush=True,
                )


if __name__ == "__main__":
    cli.run(main)
