"""Fine-tuning and linear probing on HMDB-51 / UCF-101 (spec §10; the official
`scripts/run_finetune.sh` + `eval_video.py` of facebookresearch/GDT; docs/evaluation.md).

Per fold: data → model (the pretrained backbone, and with `pooling="transformer"` its pooling,
under a fresh orthogonal `Linear(width, C)`) → the official optimizer and schedule
(`finetune_optimizer`) → the one train step and loop of the project (`step.make_train_step`,
`loop.train`: progress, metrics, non-finite stop, checkpoints, resume) with a test after each
epoch from `eval_from_epoch` on → the fold's result.

`protocol="finetune"` trains everything; `protocol="linear"` only the head, with the backbone
and pooling frozen *and in inference mode* (the official `--feature-extract True` leaves their
BatchNorm in train mode, so its statistics drift: a bug spec §10 records). Each test video is
10 clips × 3 crops whose logits are averaged. The headline is the last epoch's top-1 / top-5;
the official script's best epoch is kept as `best_epoch_*`, test-set selection for comparison
only.
"""

import functools
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from data_pipeline import atomic_file
from stica_jax import checkpointing, loop, step as step_lib
from stica_jax.errors import ConfigError
from stica_jax.evaluate import results as results_lib
from stica_jax.evaluate.finetune_optimizer import official_optimizer
from stica_jax.evaluate.folds import fold_dataset, fold_seed, parse_folds
from stica_jax.evaluate.init import Pretrained
from stica_jax.evaluate.metrics import topk_accuracy
from stica_jax.evaluate.probe import extract
from stica_jax.models.classifier import VideoClassifier
from stica_jax.models.stica import DTYPES
from stica_jax.models.temporal_pooling import POOLING_KINDS

PROTOCOLS = ("finetune", "linear")
EVALUATIONS_FILE = "evaluations.json"  # per fold: {epoch: {"top1", "top5"}}, test after each epoch

# ---------------------------------------------------------------------------------------------
# Model and optimizer
# ---------------------------------------------------------------------------------------------


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


# A linear probe's frozen part runs in inference mode: BatchNorm on its running statistics.
FROZEN_IN_LINEAR_PROBE = ("video_backbone", "video_pooling")


def fold_train_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    *,
    train_backbone: bool,
    donate: bool = True,
) -> Callable:
    """The train step of fine-tuning (`train_backbone`) or the linear probe: `step.make_train_step`
    with the cross-entropy of the classifier's logits (no crops, no dropout), everything or only
    `fc` trained, and a linear probe's backbone and pooling in inference mode (their parameters
    and BatchNorm statistics come back unchanged, bit for bit)."""
    return step_lib.make_train_step(
        graphdef,
        optimizer,
        step_lib.SupervisedLossConfig(crop_loss_weight=0.0),
        mesh,
        trainable=trainable_filter(train_backbone),
        frozen_modules=() if train_backbone else FROZEN_IN_LINEAR_PROBE,
        donate=donate,
    )


# ---------------------------------------------------------------------------------------------
# Train step and test evaluation
# ---------------------------------------------------------------------------------------------


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


def best_test_epoch(evaluations: dict[int, dict[str, float]]) -> int:
    """The official selection (GDT `eval_video.py`): the first epoch with the highest test top-1,
    as a loop over the epochs in order that keeps an epoch only when its top-1 is strictly
    higher. Test-set selection, reported beside the final epoch's score for comparison only."""
    return max(sorted(evaluations), key=lambda e: (evaluations[e]["top1"], -e))


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
    # Late: these load TensorFlow (tf.data, clu's writers), which only a fold that trains needs;
    # importing the evaluation protocols (`stica_jax.evaluate`, before torch) loads none.
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
    optimizer, schedules = official_optimizer(config, steps_per_epoch)
    if not train_backbone:
        schedules = {"head": schedules["head"]}  # the only group that trains
    graphdef, state = step_lib.init_train_state(
        classifier, optimizer, trainable_filter(train_backbone)
    )
    state = jax.device_put(state, NamedSharding(mesh, P()))

    # -- Checkpoint / resume ----------------------------------------------------------------
    saver = checkpointing.Saver(checkpointing.make_manager(fold_dir, keep=config.keep_checkpoints))
    state, start_step = loop.restore_or_start(saver, state, describe=f"fold {fold}: ")
    checkpointing.save_config(fold_dir, config)  # once restored: a failed restore keeps the old
    evaluations = {e: m for e, m in _read_evaluations(fold_dir).items()}
    evaluations = {e: m for e, m in evaluations.items() if e * steps_per_epoch <= start_step}

    batches = loop.shard_batches(
        functools.partial(pipeline.make_dataset, purpose="supervised"),
        input_config,
        split=config.train_split,
        dataset=dataset,
        global_batch_size=config.global_batch_size,
        seed=seed,
        start_step=start_step,
        input_shards=config.get("input_shards", 0),
    )

    # -- Steps --------------------------------------------------------------------------------
    train_step = fold_train_step(graphdef, optimizer, mesh, train_backbone=train_backbone)
    logits_fn = make_view_logits_fn(graphdef, mesh)
    writer = metric_writers.create_default_writer(fold_dir, just_logging=not is_chief)

    def test(state: step_lib.TrainState) -> dict[str, float]:
        test_batches = pipeline.make_dataset(
            input_config,
            "video_eval",
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

    def test_at_epoch_end(done: int, state: step_lib.TrainState) -> None:
        """The test set after each epoch from `eval_from_epoch` on, and after the last."""
        epoch = done // steps_per_epoch
        if done % steps_per_epoch or not (
            epoch >= config.eval_from_epoch or epoch == config.num_epochs
        ):
            return
        evaluations[epoch] = e = test(state)
        scalars = {f"test/{k}": e[k] for k in ("top1", "top5")}
        writer.write_scalars(done, scalars)
        loop.append_metrics(fold_dir, done, {"epoch": epoch, **scalars})
        _write_evaluations(fold_dir, evaluations)
        if is_chief:
            print(
                f"fold {fold} epoch {epoch}: test top-1 {e['top1']:.1f}% "
                f"top-5 {e['top5']:.1f}% on {e['test_videos']} videos",
                flush=True,
            )

    # -- Loop ---------------------------------------------------------------------------------
    if is_chief and start_step < total_steps:
        print(
            f"fold {fold} ({name}): {config.protocol} on {num_videos} videos × "
            f"{config.clips_per_video} clips = {steps_per_epoch} steps per epoch, "
            f"{config.num_epochs} epochs",
            flush=True,
        )
    state, _ = loop.train(
        train_step,
        state,
        batches,
        jax.random.key(seed),
        mesh=mesh,
        saver=saver,
        writer=writer,
        workdir=fold_dir,
        start_step=start_step,
        total_steps=total_steps,
        global_batch_size=config.global_batch_size,
        log_every_steps=config.log_every_steps,
        save_at=lambda done: done % steps_per_epoch == 0,  # after each epoch
        learning_rates={f"learning_rate_{g}": s for g, s in schedules.items()},
        describe=lambda done: (
            f"fold {fold} epoch {-(-done // steps_per_epoch)}/{config.num_epochs} "
        ),
        after_step=test_at_epoch_end,
        profile_steps=config.profile_steps,
    )

    # -- The fold's result --------------------------------------------------------------------
    if config.num_epochs not in evaluations:  # resumed after the last checkpoint, before the test
        evaluations[config.num_epochs] = test(state)
        _write_evaluations(fold_dir, evaluations)
    final = evaluations[config.num_epochs]
    best_epoch = best_test_epoch(evaluations)
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
