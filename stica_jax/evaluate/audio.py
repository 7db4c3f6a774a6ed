"""Audio classification on ESC-50 and DCASE2014 with frozen ResNet-9 features (seed §7.1, spec §10).

The protocol, as the seed describes it:
1. Each clip is cut into equally spaced sub-clips: ESC-50 10 × 2 s, DCASE2014 60 × 1 s
   (`data_pipeline.pipeline.make_dataset`'s "audio_eval", the front end of `config.input`).
2. Features: the last conv map of the audio backbone (`STiCA.audio_map`, inference mode),
   max-pooled with kernel (1, 3) and stride (1, 2) without padding, flattened. In the official
   [C, F, T] layout the kernel is 1 over frequency and 3 over time; here the map is
   `[F', T', C]`, so the window runs over T'. The flattening follows the official [C, F, T'']
   order, so feature i is the same unit as in a PyTorch run. A 2-s spectrogram of 257 × 199
   gives a 9 × 7 × 512 map → 9 × 3 × 512 = 13,824 features.
   Extraction is data-parallel over the `data` mesh (`jax.jit(jax.shard_map)`), gathered from
   every host; each split's features are computed once and reused by every fold.
3. An L2-regularised linear layer trained on the sub-clips (each with its clip's label):
   Adam (torch defaults β 0.9 / 0.999, ε 1e-8), LR 1e-4, weight decay 5e-4, batch 512. The
   weight decay is coupled L2 (added to the gradient before Adam's moments), which is what
   `torch.optim.Adam(weight_decay=5e-4)` does: `optax.add_decayed_weights` before
   `optax.adam`. It decays the weight and the bias, like torch's `Linear.parameters()`.
   Initialised like torch's `nn.Linear` (uniform ±1/√D). This small problem trains on one
   device, shuffled per epoch from `config.seed` and the fold, so a run is reproducible.
4. A clip's score is the mean of its sub-clips' logits, and its prediction is the argmax. The
   official audio script was never published. Its nearest official code averages raw outputs
   (logits, or SVM decision values), never softmax probabilities: `aggregrate_video_accuracy`
   in `utils.py` / `eval_video.py`, and `src/svm.py`. Top-1 per fold, then mean ± std over folds.

Folds: ESC-50 fold k tests on split `fold{k}` and trains on the other four; DCASE2014 (and any
dataset with `train`/`test` splits, e.g. AV-digits) has one fold. Each finished fold is written
to `<workdir>/fold{k}/result.json`, and a restarted run skips it. `results.json` follows
`stica_jax.evaluate.results`.
"""

import functools
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from data_pipeline.audio_frontends import check_audio_frontend, num_spectrogram_frames
from data_pipeline.datasets import open_dataset
from stica_jax import loop, step as step_lib
from stica_jax.errors import ConfigError
from stica_jax.evaluate import results as results_lib
from stica_jax.evaluate.folds import fold_seed, parse_folds
from stica_jax.evaluate.metrics import topk_accuracy
from stica_jax.evaluate.probe import extract

# Datasets with official folds: TFDS name → number of folds (splits `fold1`..`foldN`).
FOLD_SPLIT_DATASETS = {"stica_esc50": 5}
POOL_WINDOW, POOL_STRIDE = 3, 2  # over time (seed §7.1: kernel (1, 3), stride (1, 2))


def protocol_splits(dataset: str, fold: int) -> tuple[list[str], str]:
    """(train splits, test split) of `fold` of `dataset` (a TFDS name).

    ESC-50: fold k tests on `fold{k}` and trains on the other four official folds.
    Every other dataset has one fold: train on `train`, test on `test`.
    """
    base = dataset.split("/")[0]
    num_folds = FOLD_SPLIT_DATASETS.get(base, 1)
    if not 1 <= fold <= num_folds:
        raise ConfigError(f"{dataset} has folds 1..{num_folds}; got fold {fold}")
    if base in FOLD_SPLIT_DATASETS:
        return [f"fold{k}" for k in range(1, num_folds + 1) if k != fold], f"fold{fold}"
    return ["train"], "test"


def pool_and_flatten(audio_map: jax.Array) -> jax.Array:
    """Max-pool over time (window 3, stride 2, no padding), flatten in [C, F', T''] order.

    Args:
      audio_map: `[B, F', T', C]`, the audio backbone's last map.

    Returns:
      `[B, C * F' * T'']` with `T'' = (T' - 3) // 2 + 1`.
    """
    t = audio_map.shape[2]
    if t < POOL_WINDOW:
        raise ValueError(
            f"the audio map has {t} time steps, fewer than the pooling window {POOL_WINDOW}: "
            "use longer sub-clips"
        )
    pooled = jax.lax.reduce_window(
        audio_map,
        -jnp.inf,
        jax.lax.max,
        window_dimensions=(1, 1, POOL_WINDOW, 1),
        window_strides=(1, 1, POOL_STRIDE, 1),
        padding="VALID",
    )
    return jnp.transpose(pooled, (0, 3, 1, 2)).reshape(pooled.shape[0], -1)


def make_subclip_feature_fn(graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh) -> Callable:
    """`(params, batch_stats, audio [B, n_sub, F, T, 1]) → [B, n_sub, D]` pooled features.

    The model runs in inference mode, each device on its shard of the batch.
    """

    def per_device(params, batch_stats, audio):
        model = nnx.merge(graphdef, params, batch_stats, copy=True)
        model.eval()
        b, n = audio.shape[:2]
        amap = model.audio_map(audio.reshape((b * n,) + audio.shape[2:]))
        return pool_and_flatten(amap.astype(jnp.float32)).reshape(b, n, -1)

    return jax.jit(
        jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=(P(), P(), P(step_lib.MESH_AXIS)),
            out_specs=P(step_lib.MESH_AXIS),
        )
    )


def classifier_optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    """torch `Adam(lr, weight_decay=wd)`: L2 added to the gradient, then Adam (torch defaults)."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8),
    )


@functools.partial(
    jax.jit, static_argnames=("epochs", "batch_size", "learning_rate", "weight_decay")
)
def _fit(params, x, y, key, *, epochs, batch_size, learning_rate, weight_decay):
    """All epochs in one program: `(params, mean loss of the last epoch)`."""
    optimizer = classifier_optimizer(learning_rate, weight_decay)
    n = x.shape[0]
    steps = -(-n // batch_size)

    def loss_fn(params, xb, yb, mask):
        logits = xb @ params["w"] + params["b"]
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return jnp.sum(losses * mask) / jnp.sum(mask)

    def step(carry, idx):
        params, opt_state = carry
        mask = idx >= 0
        safe = jnp.where(mask, idx, 0)
        loss, grads = jax.value_and_grad(loss_fn)(
            params, x[safe], y[safe], mask.astype(jnp.float32)
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def epoch(e, carry):
        params, opt_state, _ = carry
        # A fresh order each epoch; the padding (-1) makes the last batch the smaller one.
        order = jax.random.permutation(jax.random.fold_in(key, e), n)
        order = jnp.pad(order, (0, steps * batch_size - n), constant_values=-1)
        (params, opt_state), losses = jax.lax.scan(
            step, (params, opt_state), order.reshape(steps, batch_size)
        )
        return params, opt_state, jnp.mean(losses)

    carry = (params, optimizer.init(params), jnp.zeros((), jnp.float32))
    params, _, loss = jax.lax.fori_loop(0, epochs, epoch, carry)
    return params, loss


def train_linear_classifier(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    seed: int,
    initial: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, jax.Array], float]:
    """A linear layer trained with Adam + coupled L2 (torch `Adam(weight_decay=...)`).

    Each epoch visits every sample once in a fresh random order, in batches of `batch_size` (the
    last one smaller, like a torch `DataLoader` without `drop_last`). Runs on one device.

    Args:
      features: float `[N, D]`.
      labels: int `[N]` in `[0, num_classes)`.
      initial: {"w": `[D, K]`, "b": `[K]`} to start from instead of torch's default init.

    Returns:
      ({"w": `[D, K]`, "b": `[K]`}, the mean training loss of the last epoch).
    """
    n, d = features.shape
    device = jax.local_devices()[0]
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    if initial is None:
        w_key, b_key = jax.random.split(init_key)
        bound = 1.0 / math.sqrt(d)  # torch nn.Linear's default init
        initial = {
            "w": jax.random.uniform(w_key, (d, num_classes), jnp.float32, -bound, bound),
            "b": jax.random.uniform(b_key, (num_classes,), jnp.float32, -bound, bound),
        }
    params = {k: jnp.asarray(initial[k], jnp.float32) for k in ("w", "b")}
    params, loss = _fit(
        jax.device_put(params, device),
        jax.device_put(np.asarray(features, np.float32), device),
        jax.device_put(np.asarray(labels, np.int32), device),
        shuffle_key,
        epochs=int(epochs),
        batch_size=int(batch_size),
        learning_rate=float(learning_rate),
        weight_decay=float(weight_decay),
    )
    return params, float(loss)


def clip_scores(params: Mapping[str, Any], features: np.ndarray) -> np.ndarray:
    """`[N, K]`: the mean over each clip's sub-clips of the linear layer's logits.

    Args:
      features: float `[N, n_sub, D]`.
    """
    n, n_sub, d = features.shape
    logits = features.reshape(n * n_sub, d) @ np.asarray(params["w"]) + np.asarray(params["b"])
    return logits.reshape(n, n_sub, -1).mean(axis=1)


# ---------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------


def audio_input_config(config: Any) -> dict[str, Any]:
    """The input pipeline's config: `config.input`'s front end, the dataset, the sub-clips."""
    return dict(
        config.input.to_dict(),
        dataset=config.dataset,
        audio_eval_subclips=config.audio.subclips,
        audio_eval_seconds=config.audio.seconds,
    )


def init_info(config: Any, step: int | None = None) -> dict[str, Any]:
    """The `init` entry of results.json from `config.init` (and the restored step)."""
    init = config.init
    if init.get("workdir"):
        return {"kind": "workdir", "source": init.workdir, "step": step}
    if init.get("torch"):
        return {"kind": "torch", "source": init.torch, "step": step}
    return {"kind": "random", "source": "", "step": step}


def validate_audio_config(config: Any, model: Any, *, num_devices: int, num_processes: int):
    """Raise `ConfigError` (one line) for each way `config` cannot run on `model`."""
    if not hasattr(model, "audio_map"):
        raise ConfigError(
            f"the audio protocol needs a model with an audio tower (a STiCA); "
            f"got {type(model).__name__}"
        )
    a = config.audio
    b = a.extract_batch_size
    if b % num_devices or b % num_processes:
        raise ConfigError(
            f"audio.extract_batch_size={b} must be a multiple of the {num_devices} devices "
            f"and the {num_processes} hosts"
        )
    for name in ("subclips", "epochs", "batch_size"):
        if a[name] < 1:
            raise ConfigError(f"audio.{name}={a[name]} must be >= 1")
    # The model's own front end (an official checkpoint's audio tower reads only the official
    # log-mel features, spec §7; features from another front end would score it wrongly).
    frontend = check_audio_frontend(config.input.get("audio_frontend", "stica"), ConfigError)
    samples = round(a.seconds * config.input.sample_rate)
    if samples < config.input.window_length:
        raise ConfigError(
            f"audio.seconds={a.seconds} is shorter than one {config.input.window_length}-sample "
            "window"
        )
    frames = num_spectrogram_frames(
        samples,
        window_length=config.input.window_length,
        hop_length=config.input.hop_length,
        frontend=frontend,
    )
    spec = jax.ShapeDtypeStruct((1, config.input.num_mel_bins, frames, 1), jnp.float32)
    amap = nnx.eval_shape(lambda m, s: m.audio_map(s), model, spec)
    if amap.shape[2] < POOL_WINDOW:
        raise ConfigError(
            f"{a.seconds}-s sub-clips give an audio map of {amap.shape[2]} time steps, fewer than "
            f"the pooling window {POOL_WINDOW}; use longer sub-clips"
        )
    for fold in parse_folds(config.folds):
        protocol_splits(config.dataset, fold)


def finished_folds(workdir: str, folds: list[int]) -> dict[int, dict[str, float]]:
    """The folds process 0 finds finished in `workdir`, the same on every host (a host that
    decided alone could skip a fold the others extract features for, and hang them)."""
    local = {f: results_lib.read_fold(workdir, f) for f in folds}
    if jax.process_count() == 1:
        return {f: m for f, m in local.items() if m is not None}
    top1s = np.array([np.nan if local[f] is None else local[f]["top1"] for f in folds])
    top1s = np.asarray(multihost_utils.broadcast_one_to_all(top1s))
    # A host that reads the file keeps its exact value (the broadcast may round to float32).
    return {f: local[f] or {"top1": float(v)} for f, v in zip(folds, top1s) if not np.isnan(v)}


def run_audio_protocol(
    config: Any,
    model: nnx.Module,
    *,
    workdir: str,
    mesh: jax.sharding.Mesh | None = None,
    data_dir: str | None = None,
    init: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the audio classification protocol of `config` on `model`'s audio tower.

    Args:
      config: an eval config (`configs/eval/audio_*.py`): `dataset`, `folds`, `seed`, `input`
        (the front end the model was trained with), `audio` (sub-clips, classifier).
      model: a `STiCA` (any module with `audio_map`); its parameters are not changed.
      workdir: where `fold{k}/result.json` and `results.json` go (process 0 writes).
      mesh: the `data` mesh for feature extraction (default: every device).
      data_dir: the TFDS data dir (None: $TFDS_DATA_DIR, else ~/tensorflow_datasets).
      init: results.json's `init` entry (default: from `config.init`, step unknown).

    Returns:
      The results.json dict (`stica_jax.evaluate.results`).
    """
    from data_pipeline import pipeline  # TensorFlow only when evaluating with real data.

    mesh = mesh or step_lib.make_mesh()
    validate_audio_config(config, model, num_devices=mesh.size, num_processes=jax.process_count())
    dataset = open_dataset(config.dataset, data_dir)  # once; DatasetNotPreparedError says how
    folds = parse_folds(config.folds)
    is_chief = jax.process_index() == 0
    input_config = audio_input_config(config)
    num_classes = dataset.num_classes
    a = config.audio

    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    replicated = NamedSharding(mesh, P())
    params, batch_stats = jax.device_put(jax.device_get((params, batch_stats)), replicated)
    feature_fn = make_subclip_feature_fn(graphdef, mesh)
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def split_features(split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in cache:
            t0 = time.time()
            batches = pipeline.make_dataset(
                input_config,
                "audio_eval",
                split=split,
                dataset=dataset,
                batch_size_per_host=a.extract_batch_size // jax.process_count(),
            )
            cache[split] = extract(feature_fn, params, batch_stats, batches, "audio", mesh)
            if is_chief:
                feats = cache[split][0]
                print(
                    f"features of {config.dataset} {split}: {feats.shape[0]} clips × "
                    f"{feats.shape[1]} sub-clips × {feats.shape[2]} "
                    f"({time.time() - t0:.0f} s)",
                    flush=True,
                )
        return cache[split]

    per_fold: dict[int, dict[str, float]] = {}
    t_start, computed = time.time(), 0
    finished = finished_folds(workdir, folds)
    todo = [fold for fold in folds if fold not in finished]
    for fold in folds:
        done = finished.get(fold)
        if done is not None:
            per_fold[fold] = done
            if is_chief:
                print(f"fold {fold}: top-1 {done['top1']:.1f}% (finished earlier)", flush=True)
            continue
        train_splits, test_split = protocol_splits(config.dataset, fold)
        train_sets = [split_features(s) for s in train_splits]
        train_x = np.concatenate([x for x, _ in train_sets])  # [N, n_sub, D]
        train_y = np.concatenate([y for _, y in train_sets])
        test_x, test_y = split_features(test_split)
        n_sub = train_x.shape[1]
        classifier, train_loss = train_linear_classifier(
            train_x.reshape(-1, train_x.shape[-1]),
            np.repeat(train_y, n_sub),  # every sub-clip carries its clip's label
            num_classes=num_classes,
            epochs=a.epochs,
            batch_size=a.batch_size,
            learning_rate=a.learning_rate,
            weight_decay=a.weight_decay,
            seed=fold_seed(config.seed, fold),
        )
        metrics = {"top1": topk_accuracy(clip_scores(classifier, test_x), test_y, 1)}
        per_fold[fold] = metrics
        computed += 1
        if is_chief:
            results_lib.write_fold(
                workdir,
                fold,
                metrics,
                details={
                    "train_splits": train_splits,
                    "test_split": test_split,
                    "train_clips": int(len(train_y)),
                    "test_clips": int(len(test_y)),
                    "subclips": int(n_sub),
                    "features": int(train_x.shape[-1]),
                    "final_train_loss": train_loss,
                },
            )
            elapsed = time.time() - t_start
            eta = elapsed / computed * (len(todo) - computed)
            print(
                f"fold {fold} ({computed}/{len(todo)} to run): top-1 {metrics['top1']:.1f}% on "
                f"{len(test_y)} clips, trained on {len(train_y)} × {n_sub} sub-clips, "
                f"final train loss {train_loss:.3f} | ETA {loop.format_seconds(eta)}",
                flush=True,
            )

    return results_lib.finish(
        workdir,
        config,
        protocol="audio",
        init=init or init_info(config),
        metrics=["top1"],
        folds=per_fold,
        is_chief=is_chief,
    )
