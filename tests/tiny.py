"""A slim STiCA config (same structure, a few channels) and random batches for tests."""

import numpy as np
from flax import nnx

from configs import sota
from stica_jax.models.stica import build_model


def tiny_config(dtype: str = "float32"):
    """16 frames at 64×64 → map `[2, 4, 4, 16]`; 1-s audio with 40 mel bins → `[40, 99]`."""
    config = sota.get_config()
    m = config.model
    m.video_widths, m.video_depths, m.audio_widths = (8, 8, 16, 16), (1, 1, 1, 1), (8, 8, 16, 16)
    m.transformer.mlp_width, m.head_hidden, m.embed_dim, m.dtype = 32, 16, 8, dtype
    c = config.crops
    c.space_large, c.space_small, c.time_large, c.time_small = 3, 2, 2, 1
    i = config.input
    i.num_frames, i.crop_size, i.audio_seconds, i.num_mel_bins = 16, 64, 1.0, 40
    return config


def tiny_model(config=None, *, axis_name=None, seed: int = 0):
    config = config or tiny_config()
    return build_model(config.model, config.crops, axis_name=axis_name, rngs=nnx.Rngs(seed))


def split_in(model, batch: dict, dtype) -> tuple:
    """(graphdef, params, batch_stats, batch) of `model` and `batch`, every float cast to
    `dtype`: the inputs of `step.make_grad_fn`'s function."""
    import jax
    import jax.numpy as jnp

    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)

    def cast(x):
        return jnp.asarray(x, dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    params, stats = jax.tree.map(cast, params), jax.tree.map(cast, stats)
    return graphdef, params, stats, {k: cast(v) for k, v in batch.items()}


def random_batch(config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A pretraining batch with random content and global indices 0..B-1.

    Each sample gets its own per-channel offset and scale: pure white noise would give nearly
    identical pooled features for every sample, and BatchNorm over such a batch divides by
    a near-zero spread, which makes float32 gradients ill-conditioned.
    """
    from stica_jax.shapes import input_shapes

    video_shape, audio_shape = input_shapes(config.input, batch_size)
    rng = np.random.default_rng(seed)

    def sample(shape):
        per_sample = (batch_size,) + (1,) * (len(shape) - 2) + (shape[-1],)
        offset = rng.standard_normal(per_sample)
        scale = rng.uniform(0.5, 1.5, (batch_size,) + (1,) * (len(shape) - 1))
        return (offset + scale * rng.standard_normal(shape)).astype(np.float32)

    return {
        "video1": sample(video_shape),
        "video2": sample(video_shape),
        "audio": sample(audio_shape),
        "index": np.arange(batch_size, dtype=np.int32),
    }


def tiny_supervised_config(dtype: str = "float32", *, crops: bool = True, dropout: float = 0.3):
    """`tiny_config`'s network as a 10-way classifier; crops 2 medium (3×3) + 2 small (2×2)
    spatial of the 4×4 map, no temporal ones (the shape of `configs/supervised_k400_crops.py`)."""
    import ml_collections

    config = tiny_config(dtype)
    config.mode = "supervised"
    config.supervised = ml_collections.ConfigDict(
        dict(num_classes=10, dropout=dropout, crop_loss_weight=0.5)
    )
    c = config.crops
    c.enabled = crops
    c.n_space_large, c.n_space_small, c.n_time_large, c.n_time_small = 2, 2, 0, 0
    return config


def random_supervised_batch(config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A supervised batch: `random_batch`'s first view, labels 0..9 in turn, indices 0..B-1."""
    batch = random_batch(config, batch_size, seed)
    return {
        "video": batch["video1"],
        "label": np.arange(batch_size, dtype=np.int32) % config.supervised.num_classes,
        "index": batch["index"],
    }


def eval_outputs(config, modality: str, split: str, fn) -> tuple[np.ndarray, np.ndarray]:
    """One pass over `split` of `config.eval`'s dataset as the evaluation reads it (clips ×
    crops, or audio sub-clips: V views per example): `fn` maps the views `[B·V, …]` to
    `[B·V, …]`, averaged here over each example's views in float64. (outputs `[N, …]`, labels
    `[N]`) of the real rows (mask True), for tests that recompute a reported accuracy."""
    import jax.numpy as jnp

    from data_pipeline import pipeline
    from stica_jax.evaluate.probe import eval_input_config

    outputs, labels = [], []
    for batch in pipeline.make_dataset(
        eval_input_config(config),
        f"{modality}_eval",
        split=split,
        data_dir=config.data_dir,
        batch_size_per_host=8,
        process_index=0,
        process_count=1,
    ):
        x, mask = np.asarray(batch[modality]), np.asarray(batch["mask"])
        b, v = x.shape[:2]
        y = np.asarray(fn(jnp.asarray(x.reshape((b * v,) + x.shape[2:]))), np.float64)
        outputs.append(y.reshape((b, v) + y.shape[1:]).mean(axis=1)[mask])
        labels.append(np.asarray(batch["label"])[mask])
    return np.concatenate(outputs), np.concatenate(labels)
