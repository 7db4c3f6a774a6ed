"""Fine-tuning and linear probing on HMDB-51 / UCF-101 (spec §10; official
`scripts/run_finetune.sh` + `eval_video.py` of facebookresearch/GDT).

Read top to bottom, per fold: data → model (the pretrained backbone, a fresh head) → optimizer
and schedule → state and checkpoint/resume → train step → loop (progress, metrics, checkpoints,
test evaluations) → the fold's result.

**Fine-tuning** (`protocol="finetune"`): backbone → temporal pooling (average, the official
`--num_layer 0`; or, with `pooling="transformer"`, the transformer pooling of a stica_jax
workdir or export) → `Linear(512, C)`
(orthogonal weight, zero bias: `Finetune_Model._initialize_weights`), no dropout, BN or L2 in
the head. Everything trains with SGD (momentum 0.9) and coupled weight decay 0.005 (`--wd-base`
0.005 is `opt.py`'s default too): the head at LR 0.0025, the backbone and the pooling at
0.00025, each group on the official schedule (`official_lr_factors`).

**Linear probe** (`protocol="linear"`): the same data, optimizer path and schedule, but only the
linear head trains. The backbone and pooling stay frozen *and in inference mode*: BatchNorm uses
its running statistics and never updates them. (The official `--feature-extract True` leaves BN
in train mode, so the "frozen" backbone's statistics drift: spec §10 records this bug.)

**Data** (official `AVideoDataset` / `video_transforms.clip_augmentation`, through
`data_pipeline.pipeline`): training clips of 32 consecutive 30-fps frames at a random start,
random resized crop (scale 0.14-1, ratio 3/4-4/3) to 128², horizontal flip, colour jitter with
p 0.8 (0.4 each); `clips_per_video` clips per video per epoch. Testing: each video as 10 evenly
spaced clips × 3 crops of 128² along the long side of frames resized to short side 128; the
logits of the 30 views are averaged (`aggregrate_video_accuracy` in `utils.py` averages the
raw outputs), and top-1 / top-5 are taken on the average.

**Results.** The headline is the last epoch's top-1 / top-5. The official script evaluates
after each epoch from the 8th on (`epoch > 6`, counted from 0) and reports the best: test-set
selection, kept as `best_epoch_top1` / `best_epoch_top5` / `best_epoch` (epochs counted from 1)
for comparison only (spec §10).

Every fold trains data-parallel over the `data` mesh (`jax.jit(jax.shard_map)`, SyncBN over
the global batch), writes TensorBoard summaries and `metrics.jsonl` to `<workdir>/fold<k>/`,
checkpoints there after every epoch (orbax), and resumes from its latest checkpoint when
restarted; a finished fold (`fold<k>/result.json`) is skipped.
"""

import bisect
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from data_pipeline import atomic_file
from stica_jax import checkpointing, loop, step as step_lib
from stica_jax.errors import ConfigError
from stica_jax.evaluate import results as results_lib
from stica_jax.evaluate.audio import fold_seed, parse_folds
from stica_jax.evaluate.init import Pretrained
from stica_jax.evaluate.probe import extract
from stica_jax.losses import classification_loss
from stica_jax.models.classifier import VideoClassifier
from stica_jax.models.stica import DTYPES
from stica_jax.models.temporal_pooling import POOLING_KINDS

PROTOCOLS = ("finetune", "linear")
# Datasets with official train/test folds as TFDS configs: name → fold count.
FOLD_CONFIG_DATASETS = {"stica_hmdb51": 3, "stica_ucf101": 3}
EVALUATIONS_FILE = "evaluations.json"  # per fold: {epoch: {"top1", "top5"}}, test after each epoch

# ---------------------------------------------------------------------------------------------
# Folds and the schedule
# ---------------------------------------------------------------------------------------------


def fold_dataset(dataset: str, fold: int) -> str:
    """The TFDS name of `fold` of `dataset`.

    "stica_hmdb51" → "stica_hmdb51/fold2" (folds 1-3 are TFDS configs, each with train/test
    splits); a name holding "{fold}" is formatted ("stica_ucf101/fold{fold}_short_side64"); any
    other dataset (AV-digits) has one fold, itself.
    """
    if "{fold}" in dataset:
        return dataset.format(fold=fold)
    num_folds = FOLD_CONFIG_DATASETS.get(dataset, 1)
    if not 1 <= fold <= num_folds:
        raise ConfigError(f"{dataset} has folds 1..{num_folds}; got fold {fold}")
    return f"{dataset}/fold{fold}" if dataset in FOLD_CONFIG_DATASETS else dataset


def official_lr_factors(
    num_epochs: int,
    *,
    warmup_epochs: int,
    multiplier: float,
    milestones: Sequence[int],
    gamma: float,
) -> list[float]:
    """The LR of each epoch (from 0) as a multiple of the base LR, as the official fine-tuning
    gets it.

    `eval_video.py` chains `GradualWarmupScheduler(multiplier, total_epoch=warmup_epochs,
    after_scheduler=MultiStepLR(milestones - warmup_epochs, gamma))` (`src/scheduler.py`) and
    steps it once after each epoch. Epoch e ≤ warmup trains at `1 + (multiplier - 1) e / warmup`
    (1, 4.5, 8 for multiplier 8 over 2 epochs). After that the warmup scheduler hands over: the
    `MultiStepLR` starts from `multiplier × base` and counts its own epochs from 0 at epoch
    warmup + 1, so a milestone m takes effect at epoch m + 1 (epochs 7 and 11 for "6,10"). The
    official run: 1, 4.5, 8, 8, 8, 8, 8, 0.4, 0.4, 0.4, 0.4, 0.02.
    """
    shifted = sorted(m - warmup_epochs for m in milestones)
    if warmup_epochs == 0:  # eval_video.py then steps the MultiStepLR alone
        return [gamma ** bisect.bisect_right(shifted, epoch) for epoch in range(num_epochs)]
    factors = []
    for epoch in range(num_epochs):
        if epoch <= warmup_epochs:
            factors.append(1.0 + (multiplier - 1.0) * epoch / warmup_epochs)
        else:
            after = epoch - warmup_epochs - 1  # the MultiStepLR's own epoch count
            factors.append(multiplier * gamma ** bisect.bisect_right(shifted, after))
    return factors


def epoch_schedule(base_lr: float, factors: Sequence[float], steps_per_epoch: int) -> Callable:
    """optax schedule: `base_lr × factors[step // steps_per_epoch]` (held after the last epoch)."""
    table = jnp.asarray(np.asarray(factors, np.float64) * base_lr, jnp.float32)

    def schedule(step):
        return table[jnp.minimum(step // steps_per_epoch, len(factors) - 1)]

    return schedule


# ---------------------------------------------------------------------------------------------
# Model and optimizer
# ---------------------------------------------------------------------------------------------

# Parameter groups by the classifier's top-level attribute (official: classifier / base /
# pooling_arch, each with its own LR and weight decay).
GROUPS = {"fc": "head", "video_backbone": "backbone", "video_pooling": "pooling"}


def build_classifier(
    config: ml_collections.ConfigDict,
    pretrained: Pretrained,
    num_classes: int,
    *,
    seed: int,
    axis_name: str | None = step_lib.MESH_AXIS,
) -> VideoClassifier:
    """The pretrained backbone (and, with `pooling="transformer"`, its transformer pooling) under
    a fresh `Linear(width, num_classes)`: orthogonal weight and zero bias, as the official
    `Finetune_Model._initialize_weights` (`nn.init.orthogonal_(weight, 1)`, bias 0)."""
    m = config.model
    t = m.transformer
    classifier = VideoClassifier(
        num_classes,
        video_widths=tuple(m.video_widths),
        video_depths=tuple(m.video_depths),
        pooling=config.pooling,
        transformer=dict(
            num_layers=t.num_layers, num_heads=t.num_heads, mlp_width=t.mlp_width, max_len=t.max_len
        ),
        dropout=0.0,
        crops=None,
        axis_name=axis_name,
        dtype=DTYPES[m.dtype],
        rngs=nnx.Rngs(seed),
    )
    source = pretrained.model
    nnx.update(classifier.video_backbone, nnx.state(source.video_backbone))
    if config.pooling == "transformer":
        if type(source.video_pooling) is not type(classifier.video_pooling):
            raise ConfigError(
                "pooling='transformer' fine-tunes the model's transformer pooling, but the "
                f"model's pooling is {type(source.video_pooling).__name__} "
                "(pretrain with model.pooling='transformer', or use pooling='avg')"
            )
        nnx.update(classifier.video_pooling, nnx.state(source.video_pooling))
    kernel = classifier.fc.kernel.get_value()  # [in, out]: torch's weight transposed
    init = jax.nn.initializers.orthogonal(scale=1.0)
    classifier.fc.kernel.set_value(init(jax.random.key(seed), kernel.shape, kernel.dtype))
    classifier.fc.bias.set_value(jnp.zeros_like(classifier.fc.bias.get_value()))
    return classifier


def trainable_filter(train_backbone: bool):
    """What trains: everything (fine-tuning) or only the head `fc` (linear probe)."""
    return nnx.Param if train_backbone else nnx.All(nnx.Param, nnx.PathContains("fc"))


def split_params(params: nnx.State, train_backbone: bool) -> tuple[nnx.State, nnx.State | None]:
    """(trainable, frozen or None) parts of the classifier's parameters."""
    if train_backbone:
        return params, None
    return nnx.split_state(params, nnx.PathContains("fc"), ...)


def _group_of(path) -> str:
    return GROUPS[path[0].key]


def make_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, dict[str, Callable]]:
    """torch SGD over the official parameter groups: per group `add_decayed_weights(wd)` then
    heavy-ball momentum (torch's coupled weight decay, dampening 0), at the group's base LR on
    `official_lr_factors`. Returns (optimizer, {group: LR schedule})."""
    o = config.optimizer
    factors = official_lr_factors(
        config.num_epochs,
        warmup_epochs=o.warmup_epochs,
        multiplier=o.warmup_multiplier,
        milestones=tuple(o.milestones),
        gamma=o.gamma,
    )
    groups = {
        "head": (o.head_lr, o.weight_decay),
        "backbone": (o.backbone_lr, o.backbone_weight_decay),
        "pooling": (o.pooling_lr, o.pooling_weight_decay),
    }
    schedules = {g: epoch_schedule(lr, factors, steps_per_epoch) for g, (lr, _) in groups.items()}
    transforms = {
        g: step_lib.make_optimizer(schedules[g], momentum=o.momentum, weight_decay=wd)
        for g, (_, wd) in groups.items()
    }

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda path, _: _group_of(path), params)

    return optax.multi_transform(transforms, labels), schedules


# ---------------------------------------------------------------------------------------------
# Train step and test evaluation
# ---------------------------------------------------------------------------------------------


def make_train_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    *,
    train_backbone: bool,
    donate: bool = True,
) -> Callable:
    """Jitted `(state, batch, rng) → (state, metrics)` over `mesh` (`jax.jit(jax.shard_map)`).

    `batch`: video `[B, T, S, S, 3]`, label `[B]`, index `[B]` (the local shard). The loss is
    the global-batch cross-entropy (`losses.classification_loss`, pmean over `data`), so the
    gradient summed over devices by the transpose of the replicated parameters is the global
    one, as in `stica_jax.step`. With `train_backbone=False` only `fc` is differentiated and
    updated; the backbone and pooling run in inference mode, so their parameters and BatchNorm
    statistics come back unchanged, bit for bit. A step whose loss, gradient or new state is
    not finite leaves the state unchanged and reports `finite` 0 (`step.keep_if_finite`).
    """

    def per_device(state: step_lib.TrainState, batch, rng):
        del rng  # no dropout, no crops: the step is deterministic given the batch
        trainable, frozen = split_params(state.params, train_backbone)
        others = () if frozen is None else (frozen,)

        def loss_fn(trainable):
            model = nnx.merge(graphdef, trainable, *others, state.batch_stats, copy=True)
            model.train()
            if not train_backbone:  # inference mode: running BN statistics, never updated
                model.video_backbone.eval()
                model.video_pooling.eval()
            logits = model(batch["video"])
            loss, aux = classification_loss(
                logits, batch["label"], None, crop_loss_weight=0.0, axis_name=step_lib.MESH_AXIS
            )
            return loss, (aux, nnx.state(model, nnx.BatchStat))

        (loss, (aux, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, trainable)
        trained = optax.apply_updates(trainable, updates)
        params = trained if frozen is None else nnx.merge_state(trained, frozen)
        new_state = step_lib.TrainState(
            step=state.step + 1, params=params, batch_stats=new_stats, opt_state=opt_state
        )
        new_state, finite = step_lib.keep_if_finite(loss, grad_norm, new_state, state)
        metrics = dict(aux, loss=loss, grad_norm=grad_norm, finite=finite.astype(jnp.float32))
        return new_state, metrics

    return jax.jit(
        jax.shard_map(
            per_device, mesh=mesh, in_specs=(P(), P(step_lib.MESH_AXIS), P()), out_specs=(P(), P())
        ),
        donate_argnums=(0,) if donate else (),
    )


def make_view_logits_fn(graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh) -> Callable:
    """Jitted `(params, batch_stats, video [B, V, T, S, S, 3]) → [B, K]`: each video's logits
    averaged over its V views, in inference mode, each device on its shard of the videos."""

    def per_device(params, batch_stats, video):
        model = nnx.merge(graphdef, params, batch_stats, copy=True)
        model.eval()
        b, v = video.shape[:2]
        logits = model(video.reshape((b * v,) + video.shape[2:]))
        return jnp.mean(logits.reshape(b, v, -1).astype(jnp.float32), axis=1)

    return jax.jit(
        jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=(P(), P(), P(step_lib.MESH_AXIS)),
            out_specs=P(step_lib.MESH_AXIS),
        )
    )


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Top-k accuracy (%) of `scores` `[N, K]`: the label is among the k highest scores (k is
    capped at K)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return 100.0 * float(np.mean(np.any(top == labels[:, None], axis=1)))


# ---------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------


def video_input_config(config: ml_collections.ConfigDict, dataset: str) -> dict[str, Any]:
    """The pipeline's `InputConfig` fields: `config.input` with the fold's dataset."""
    return dict(config.input.to_dict(), dataset=dataset)


def validate_video_config(
    config: ml_collections.ConfigDict, *, num_devices: int, num_processes: int
) -> None:
    """One-line `ConfigError` for each way `config` cannot run."""
    if config.protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {config.protocol!r} is not one of {PROTOCOLS}")
    for name in ("global_batch_size", "eval_batch_size"):
        b = config[name]
        if b < 1 or b % num_devices or b % num_processes:
            raise ConfigError(
                f"{name}={b} must be a positive multiple of the {num_devices} devices and the "
                f"{num_processes} hosts"
            )
    if config.pooling not in POOLING_KINDS:
        raise ConfigError(f"pooling={config.pooling!r}; expected one of {list(POOLING_KINDS)}")
    if config.model.dtype not in DTYPES:
        raise ConfigError(f"unknown model.dtype {config.model.dtype!r}; expected {list(DTYPES)}")
    if config.num_epochs < 1 or config.clips_per_video < 1:
        raise ConfigError("num_epochs and clips_per_video must be >= 1")
    for fold in parse_folds(config.folds):
        fold_dataset(config.dataset, fold)


def run_video_protocol(
    config: ml_collections.ConfigDict,
    pretrained: Pretrained,
    *,
    workdir: str,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
    """Fine-tune (`config.protocol="finetune"`) or linear-probe ("linear") `pretrained` on each
    fold of `config.folds`; returns the results.json dict (also written to `workdir`).

    Args:
      config: an eval config (`configs/eval/finetune_*.py`, `linear_*.py`), with `model` the
        pretrained architecture (`init.load_pretrained` fills it).
      pretrained: the model whose video backbone (and pooling) starts each fold.
      workdir: `fold<k>/` (checkpoints, metrics, result.json) and `results.json` go here.
      mesh: the `data` mesh (default: every device of every host).
    """
    mesh = mesh or step_lib.make_mesh()
    validate_video_config(config, num_devices=mesh.size, num_processes=jax.process_count())
    pretrained.require("video", config.protocol)
    folds = parse_folds(config.folds)
    is_chief = jax.process_index() == 0
    per_fold: dict[int, dict[str, float]] = {}
    for fold in folds:
        done = results_lib.read_fold(workdir, fold)
        if done is None:
            done = run_fold(config, pretrained, fold, workdir=workdir, mesh=mesh)
        elif is_chief:
            print(f"fold {fold}: top-1 {done['top1']:.1f}% (finished earlier)", flush=True)
        per_fold[fold] = done
    return results_lib.finish(
        workdir,
        config,
        protocol=config.protocol,
        init=pretrained.info,
        metrics=["top1", "top5"],
        folds=per_fold,
        is_chief=is_chief,
    )


def _read_evaluations(fold_dir: str) -> dict[int, dict[str, float]]:
    path = os.path.join(fold_dir, EVALUATIONS_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as file:
        return {int(k): v for k, v in json.load(file).items()}


def _write_evaluations(fold_dir: str, evaluations: Mapping[int, Mapping[str, float]]) -> None:
    if jax.process_index() == 0:
        table = {str(k): dict(v) for k, v in sorted(evaluations.items())}
        atomic_file.write_text(
            os.path.join(fold_dir, EVALUATIONS_FILE), json.dumps(table, indent=2)
        )


def run_fold(
    config: ml_collections.ConfigDict,
    pretrained: Pretrained,
    fold: int,
    *,
    workdir: str,
    mesh: jax.sharding.Mesh,
) -> dict[str, float]:
    """Train and test one fold (resuming from its checkpoints); returns its metrics."""
    from clu import metric_writers

    from data_pipeline import pipeline
    from stica_jax import data

    is_chief = jax.process_index() == 0
    fold_dir = results_lib.fold_dir(workdir, fold)
    train_backbone = config.protocol == "finetune"

    # -- Data ---------------------------------------------------------------------------------
    name = fold_dataset(config.dataset, fold)
    dataset = data.open_run_dataset(config, name)  # DatasetNotPreparedError says how to prepare
    num_classes = dataset.num_classes
    num_videos = dataset.num_examples(config.train_split)
    steps_per_epoch = config.clips_per_video * num_videos // config.global_batch_size
    if steps_per_epoch < 1:
        raise ConfigError(
            f"{name} {config.train_split} has {num_videos} videos: fewer than one batch of "
            f"{config.global_batch_size} clips per epoch"
        )
    total_steps = config.num_epochs * steps_per_epoch
    input_config = video_input_config(config, name)
    seed = fold_seed(config.seed, fold)

    # -- Model, optimizer, state ------------------------------------------------------------
    classifier = build_classifier(config, pretrained, num_classes, seed=seed)
    graphdef, params, batch_stats = nnx.split(classifier, nnx.Param, nnx.BatchStat)
    optimizer, schedules = make_optimizer(config, steps_per_epoch)
    if not train_backbone:
        schedules = {"head": schedules["head"]}  # the only group that trains
    trainable, _ = split_params(params, train_backbone)
    state = step_lib.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=optimizer.init(trainable),
    )
    state = jax.device_put(state, NamedSharding(mesh, P()))

    # -- Checkpoint / resume ----------------------------------------------------------------
    manager = checkpointing.make_manager(fold_dir, keep=config.keep_checkpoints)
    saver = checkpointing.Saver(manager)
    start_step = 0
    if manager.latest_step() is not None:
        state, start_step = checkpointing.restore_state(manager, state)
        if is_chief:
            print(f"fold {fold}: resuming from the checkpoint of step {start_step}", flush=True)
    checkpointing.save_config(fold_dir, config)  # once restored: a failed restore keeps the old
    evaluations = {e: m for e, m in _read_evaluations(fold_dir).items()}
    evaluations = {e: m for e, m in evaluations.items() if e * steps_per_epoch <= start_step}

    batches = loop.shard_batches(
        pipeline.make_supervised_dataset,
        input_config,
        split=config.train_split,
        dataset=dataset,
        global_batch_size=config.global_batch_size,
        seed=seed,
        start_step=start_step,
        input_shards=config.get("input_shards", 0),
    )

    # -- Steps --------------------------------------------------------------------------------
    train_step = make_train_step(graphdef, optimizer, mesh, train_backbone=train_backbone)
    logits_fn = make_view_logits_fn(graphdef, mesh)
    writer = metric_writers.create_default_writer(fold_dir, just_logging=not is_chief)
    rng = jax.random.key(seed)

    def test() -> dict[str, float]:
        test_batches = pipeline.make_eval_dataset(
            input_config,
            split=config.test_split,
            dataset=dataset,
            batch_size_per_host=config.eval_batch_size // jax.process_count(),
        )
        logits, labels = extract(
            logits_fn, state.params, state.batch_stats, test_batches, "video", mesh
        )
        return {
            "top1": topk_accuracy(logits, labels, 1),
            "top5": topk_accuracy(logits, labels, 5),
            "test_videos": int(len(labels)),
        }

    # -- Loop ---------------------------------------------------------------------------------
    if is_chief and start_step < total_steps:
        print(
            f"fold {fold} ({name}): {config.protocol} on {num_videos} videos × "
            f"{config.clips_per_video} clips = {steps_per_epoch} steps per epoch, "
            f"{config.num_epochs} epochs",
            flush=True,
        )
    pending: list[dict[str, jax.Array]] = []
    last_time, last_step = time.time(), start_step
    try:
        for step in range(start_step, total_steps):
            batch = step_lib.global_batch(next(batches), mesh)
            state, metrics = train_step(state, batch, rng)
            pending.append(metrics)
            done = step + 1
            saver.check()  # a save that failed in the background stops the run now
            epoch_end = done % steps_per_epoch == 0
            # Every save (at an epoch's end) is preceded by the check that each step since the
            # last one was finite.
            if epoch_end or done % config.log_every_steps == 0:
                batches.stop_if_any_host_failed()  # every host had its input (`loop`)
                history = jax.device_get(pending)
                pending = []
                loop.check_finite(history, done, saver, f"fold {fold}: ")
                now = time.time()
                steps_per_sec = (done - last_step) / max(now - last_time, 1e-9)
                scalars = {
                    k: float(np.mean([m[k] for m in history])) for k in history[0] if k != "finite"
                }
                scalars.update(
                    {f"learning_rate_{g}": float(s(step)) for g, s in schedules.items()},
                    steps_per_sec=steps_per_sec,
                    clips_per_sec=steps_per_sec * config.global_batch_size,
                )
                writer.write_scalars(done, scalars)
                loop.append_metrics(fold_dir, done, scalars)
                if is_chief:
                    epoch = -(-done // steps_per_epoch)
                    print(
                        f"fold {fold} epoch {epoch}/{config.num_epochs} step {done}/{total_steps} "
                        f"({100 * done / total_steps:.0f}%) loss {scalars['loss']:.3f} "
                        f"top1 {100 * scalars['top1']:.1f}% lr {scalars['learning_rate_head']:.5f} "
                        + loop.speed_and_eta(
                            done, total_steps, steps_per_sec, scalars["clips_per_sec"]
                        ),
                        flush=True,
                    )
                last_time, last_step = time.time(), done
            if epoch_end:
                epoch = done // steps_per_epoch
                if epoch >= config.eval_from_epoch or epoch == config.num_epochs:
                    evaluations[epoch] = test()
                    scalars = {f"test/{k}": evaluations[epoch][k] for k in ("top1", "top5")}
                    writer.write_scalars(done, scalars)
                    loop.append_metrics(fold_dir, done, {"epoch": epoch, **scalars})
                    _write_evaluations(fold_dir, evaluations)
                    if is_chief:
                        e = evaluations[epoch]
                        print(
                            f"fold {fold} epoch {epoch}: test top-1 {e['top1']:.1f}% "
                            f"top-5 {e['top5']:.1f}% on {e['test_videos']} videos",
                            flush=True,
                        )
            if epoch_end or manager.reached_preemption(done):
                batches.stop_if_any_host_failed()
                saver.save(done, state)
        saver.wait()
    finally:
        # Also when the loop raises (a non-finite step, KeyboardInterrupt): the checkpoint being
        # written asynchronously completes, so a restart resumes from it. A save that failed
        # was raised by `saver` (one line), or the loop's own error is the one to show.
        try:
            manager.wait_until_finished()
        except Exception:  # noqa: BLE001
            pass
        writer.flush()

    # -- The fold's result --------------------------------------------------------------------
    if config.num_epochs not in evaluations:  # resumed after the last checkpoint, before the test
        evaluations[config.num_epochs] = test()
        _write_evaluations(fold_dir, evaluations)
    final = evaluations[config.num_epochs]
    # The official selection: the first epoch with the highest test top-1 (strict `>`).
    best_epoch = max(sorted(evaluations), key=lambda e: (evaluations[e]["top1"], -e))
    metrics = {
        "top1": final["top1"],
        "top5": final["top5"],
        "best_epoch_top1": evaluations[best_epoch]["top1"],
        "best_epoch_top5": evaluations[best_epoch]["top5"],
        "best_epoch": best_epoch,
    }
    if is_chief:
        results_lib.write_fold(
            workdir,
            fold,
            metrics,
            details={
                "dataset": name,
                "train_videos": num_videos,
                "test_videos": final["test_videos"],
                "steps_per_epoch": steps_per_epoch,
                "epochs": {str(e): evaluations[e] for e in sorted(evaluations)},
            },
        )
        print(
            f"fold {fold}: top-1 {metrics['top1']:.1f}% top-5 {metrics['top5']:.1f}% (final "
            f"epoch); best test epoch {best_epoch}: {metrics['best_epoch_top1']:.1f}% "
            "(test-set selection, as the official script reports)",
            flush=True,
        )
    return metrics
