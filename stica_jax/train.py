"""STiCA pretraining and supervised training: `train_and_evaluate(config, workdir)`.

Read top to bottom: config checks → mesh → input → model and state → checkpoint/resume →
train step → loop (metrics, progress, checkpoints, online eval) → final report.

`config.mode` picks what is trained; only these parts differ, everything else (the
data-parallel step, optimizer, schedule, checkpoints, metrics, loop) is shared:

| part | "pretrain" (STiCA, spec §6) | "supervised" (seed Table 8) |
| --- | --- | --- |
| model | `STiCA` (`build_model`) | `VideoClassifier` (`build_classifier`) |
| loss | `LossConfig` → `stica_loss` | `SupervisedLossConfig` → `classification_loss` |
| input | `make_dataset(…, "pretrain")` (2 views + audio) | `make_dataset(…, "supervised")` (1 view + label) |
| eval | frozen-feature probe (`evaluate.probe`) | classifier top-1 (`evaluate.classification`) |
"""

import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from clu import metric_writers
from flax import nnx

from data_pipeline import atomic_file, pipeline
from data_pipeline.audio_frontends import check_audio_frontend
from data_pipeline.datasets import PreparedDataset
from stica_jax import checkpointing, data, loop, step as step_lib, workdir_lock
from stica_jax.crops import FAMILIES, CropConfig
from stica_jax.errors import ConfigError
from stica_jax.evaluate import classification, probe
from stica_jax.losses import CROP_PAIRINGS, num_crop_terms
from stica_jax.models import build_train_model
from stica_jax.models.layers import BATCH_NORM_SYNC
from stica_jax.models.stica import DTYPES
from stica_jax.models.temporal_pooling import POOLING_KINDS
from stica_jax.models.video_resnet import VideoResNet
from stica_jax.shapes import input_shapes

# ---------------------------------------------------------------------------------------------
# Config checks (before anything compiles)
# ---------------------------------------------------------------------------------------------


def video_map_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    """(T', H', W') of the visual map for the configured input, from an abstract trace."""
    model = nnx.eval_shape(
        lambda: VideoResNet(config.model.video_widths, config.model.video_depths, rngs=nnx.Rngs(0))
    )
    video_shape, _ = input_shapes(config.input)
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(video_shape, jnp.float32))
    return tuple(out.shape[1:4])


MODES = ("pretrain", "supervised")
# Online evaluators of each mode: frozen-feature probes of a pretrained model, or the top-1
# of the trained classifier itself.
EVAL_METHODS = {"pretrain": ("linear_probe", "knn", "none"), "supervised": ("classifier", "none")}


def validate_config(
    config: ml_collections.ConfigDict, *, num_devices: int, num_processes: int
) -> None:
    """Raise `ConfigError` with one clear line for each way the config cannot run."""
    b = config.global_batch_size
    if b % num_devices:
        raise ConfigError(
            f"global_batch_size={b} is not divisible by the {num_devices} devices "
            f"of the mesh; use a multiple of {num_devices}"
        )
    if b % num_processes:
        raise ConfigError(f"global_batch_size={b} is not divisible by {num_processes} hosts")
    if config.mode not in MODES:
        raise ConfigError(f"unknown mode {config.mode!r}; expected 'pretrain' or 'supervised'")
    if config.mode == "supervised":
        if "supervised" not in config:
            raise ConfigError(
                "mode 'supervised' needs a config.supervised section (num_classes, "
                "dropout, crop_loss_weight); see configs/supervised_k400.py"
            )
        sup = config.supervised
        if sup.num_classes < 0:
            raise ConfigError(
                f"supervised.num_classes={sup.num_classes} must be >= 0 "
                "(0 = the dataset's label count)"
            )
        if not 0.0 <= sup.crop_loss_weight <= 1.0:
            raise ConfigError(
                f"supervised.crop_loss_weight={sup.crop_loss_weight} must be in [0, 1]"
            )
        if not 0.0 <= sup.dropout < 1.0:
            raise ConfigError(f"supervised.dropout={sup.dropout} must be in [0, 1)")
    if config.model.pooling not in POOLING_KINDS:
        raise ConfigError(
            f"unknown model.pooling {config.model.pooling!r}; expected one of {list(POOLING_KINDS)}"
        )
    p = config.performance
    if p.bn_sync not in BATCH_NORM_SYNC:
        raise ConfigError(
            f"unknown performance.bn_sync {p.bn_sync!r}; expected one of {list(BATCH_NORM_SYNC)}"
        )
    if p.conv_channel_multiple < 0:
        raise ConfigError(
            f"performance.conv_channel_multiple={p.conv_channel_multiple} must be >= 0"
        )
    if config.model.dtype not in DTYPES:
        raise ConfigError(f"unknown model.dtype {config.model.dtype!r}; expected {list(DTYPES)}")
    methods = EVAL_METHODS[config.mode]
    if config.eval.method not in methods:
        raise ConfigError(
            f"unknown eval.method {config.eval.method!r} for mode "
            f"{config.mode!r}; expected one of {list(methods)}"
        )
    if config.eval.method != "none" and config.eval.batch_size % num_devices:
        raise ConfigError(
            f"eval.batch_size={config.eval.batch_size} is not divisible by the "
            f"{num_devices} devices"
        )
    check_audio_frontend(config.input.get("audio_frontend", "stica"), ConfigError)
    if config.mode == "pretrain" and config.loss.crop_pairs not in CROP_PAIRINGS:
        raise ConfigError(
            f"unknown loss.crop_pairs {config.loss.crop_pairs!r}; expected one of "
            f"{list(CROP_PAIRINGS)}"
        )
    if config.crops.enabled:
        crops = CropConfig.from_config(config.crops)
        try:
            crops.validate(video_map_shape(config))
        except ValueError as e:
            video_shape, _ = input_shapes(config.input)
            raise ConfigError(f"crops do not fit the input {video_shape[1:4]}: {e}") from None
        pairs = config.loss.crop_pairs
        if config.mode == "pretrain" and not any(
            num_crop_terms(*crops.counts(f), pairs) for f in FAMILIES
        ):
            raise ConfigError(
                f"loss.crop_pairs={pairs!r} contrasts none of these crops: it needs a small "
                "crop or two large ones in a family; add crops or set crops.enabled=False"
            )
    if b <= 0:
        raise ConfigError(f"global_batch_size={b} must be positive")
    for field in ("checkpoint_every_steps", "log_every_steps", "keep_checkpoints"):
        if config[field] < 1:
            raise ConfigError(f"{field}={config[field]} must be at least 1")
    # 0 trains nothing on purpose (the data is prepared and the initialisation evaluated);
    # a negative count would do the same silently.
    if not config.num_epochs >= 0:
        raise ConfigError(f"num_epochs={config.num_epochs} must be 0 or more")


def validate_run_length(config: ml_collections.ConfigDict, num_examples: int) -> None:
    """Raise `ConfigError` when a positive `num_epochs` of `num_examples` rounds down to no step
    at all (0 epochs is a run without training, on purpose)."""
    per_epoch = steps_per_epoch(config, num_examples)
    if config.num_epochs > 0 and int(config.num_epochs * per_epoch) < 1:
        raise ConfigError(
            f"num_epochs={config.num_epochs} of {per_epoch} steps each is no step at all; "
            f"train at least {1 / per_epoch:.3g} epochs"
        )


# ---------------------------------------------------------------------------------------------
# Model, optimizer and state
# ---------------------------------------------------------------------------------------------


def steps_per_epoch(config: ml_collections.ConfigDict, num_examples: int) -> int:
    return max(1, num_examples // config.global_batch_size)


def make_schedule(config: ml_collections.ConfigDict, num_examples: int) -> optax.Schedule:
    per_epoch = steps_per_epoch(config, num_examples)
    o = config.optimizer
    return step_lib.learning_rate_schedule(
        base_lr=o.base_lr,
        warmup_start_lr=o.warmup_start_lr,
        warmup_steps=int(o.warmup_epochs * per_epoch),
        total_steps=int(config.num_epochs * per_epoch),
        decay=o.decay,
        final_lr=o.final_lr,
    )


def make_train_optimizer(
    config: ml_collections.ConfigDict, num_examples: int | None = None
) -> optax.GradientTransformation:
    schedule = make_schedule(config, num_examples or config.num_train_examples or 1)
    return step_lib.make_optimizer(
        schedule, momentum=config.optimizer.momentum, weight_decay=config.optimizer.weight_decay
    )


def create_train_state(
    config: ml_collections.ConfigDict,
    *,
    axis_name: str | None = "data",
    num_examples: int | None = None,
    abstract: bool = False,
):
    """(model, optimizer, state): the model of `config.mode` built from `config.seed`, a
    fresh `TrainState`.

    `abstract=True` gives shape-only model and state (nothing allocated).
    """
    optimizer = make_train_optimizer(config, num_examples)

    def init():
        model = build_train_model(config, axis_name=axis_name, rngs=nnx.Rngs(config.seed))
        return model, step_lib.init_train_state(model, optimizer)[1]

    model, state = nnx.eval_shape(init) if abstract else init()
    return model, optimizer, state


def resolve_num_classes(config: ml_collections.ConfigDict, train_data: PreparedDataset) -> None:
    """Supervised: fill `supervised.num_classes` = 0 from the dataset, or check it matches."""
    if config.mode != "supervised":
        return
    labels = train_data.num_classes
    if config.supervised.num_classes == 0:
        config.supervised.num_classes = labels
    elif config.supervised.num_classes != labels:
        raise ConfigError(
            f"supervised.num_classes={config.supervised.num_classes} but "
            f"{config.input.dataset} has {labels} classes; set it to {labels} "
            "(or 0 to read it from the dataset)"
        )


def num_train_examples(config: ml_collections.ConfigDict, train_data: PreparedDataset) -> int:
    """Examples per epoch: `config.num_train_examples`, or 0 = the train split's size."""
    return config.num_train_examples or train_data.num_examples(config.train_split)


def host_batches(
    config: ml_collections.ConfigDict, train_data: PreparedDataset, start_step: int
) -> loop.ShardBatches:
    """Train batches of this host for `config.mode`; `config.input_shards` (0 = one per host)
    data shards."""
    return loop.shard_batches(
        functools.partial(pipeline.make_dataset, purpose=config.mode),
        config.input,
        split=config.train_split,
        dataset=train_data,
        global_batch_size=config.global_batch_size,
        seed=config.seed,
        start_step=start_step,
        input_shards=config.get("input_shards", 0),
    )


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, config_change: str = "refuse"
) -> dict[str, Any]:
    """Train per `config` (`mode` "pretrain" or "supervised"), checkpointing to and resuming
    from `workdir`.

    One run per workdir: the run holds `workdir`'s lock (`workdir_lock`) from before anything
    compiles to its end. A restart must keep the architecture and data of the saved config
    (`checkpointing.check_saved_config`) unless `config_change` is "allow".

    Returns the final metrics (and the eval table, under "probe", when `config.eval` asks
    for one: probe accuracies when pretraining, the classifier's top-1 when supervised).
    """
    # -- Config, workdir lock -------------------------------------------------------------------
    config = config.copy_and_resolve_references()
    data.resolve_av_digits(config)
    validate_config(config, num_devices=jax.device_count(), num_processes=jax.process_count())
    if config_change not in ("refuse", "allow"):
        raise ConfigError(f"config_change={config_change!r}; expected 'refuse' or 'allow'")
    with workdir_lock.held(workdir):
        return _train_and_evaluate(config, workdir, allow_config_change=config_change == "allow")


def _train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool
) -> dict[str, Any]:
    # -- Mesh -----------------------------------------------------------------------------------
    mesh = step_lib.make_mesh()
    is_chief = jax.process_index() == 0
    logging.info("mesh: %d devices on %d hosts", jax.device_count(), jax.process_count())

    # -- Input ------------------------------------------------------------------------------------
    # Each dataset is opened once (AV-digits generated if absent); the loop, the input pipeline
    # and the evaluators share these values.
    train_data = data.open_run_dataset(config, config.input.dataset)
    eval_data = data.open_eval_dataset(config, train_data)  # None: no online eval
    resolve_num_classes(config, train_data)  # before save_config: restore_model needs it
    num_examples = num_train_examples(config, train_data)
    total_steps = int(config.num_epochs * steps_per_epoch(config, num_examples))
    validate_run_length(config, num_examples)
    # The workdir's contract, before anything is written into it.
    checkpointing.check_saved_config(workdir, config, allow_changes=allow_config_change)

    # -- Model and state ---------------------------------------------------------------------
    model, optimizer, state = create_train_state(config, num_examples=num_examples)
    graphdef = nnx.graphdef(model)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state = jax.device_put(state, replicated)
    # A host copy: the device buffers of `state` are donated to the train step.
    initial = (
        jax.device_get((state.params, state.batch_stats))
        if config.eval.compare_random_init
        else None
    )
    schedule = make_schedule(config, num_examples)

    # -- Checkpoint / resume ---------------------------------------------------------------
    # The newest checkpoint that restores; unreadable newer ones are set aside, and none
    # readable beside existing ones stops the run (`checkpointing.restore_newest`).
    saver = checkpointing.Saver(checkpointing.make_manager(workdir, keep=config.keep_checkpoints))
    state, start_step = loop.restore_or_start(saver, state)
    checkpointing.save_config(workdir, config)  # once restored: a failed restore keeps the old
    if is_chief:
        _drop_metrics_after(workdir, start_step)  # each step once in metrics.jsonl

    batches = host_batches(config, train_data, start_step)

    # -- Train step -------------------------------------------------------------------------------
    train_step = step_lib.make_train_step(
        graphdef,
        optimizer,
        step_lib.loss_config_for(config),
        mesh,
        per_device_batch_norm=config.performance.bn_sync == "device",
        sum_grads_once=config.performance.sum_grads_once,
    )
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_chief)
    if start_step == 0:
        writer.write_hparams(
            {k: str(v) for k, v in config.to_dict().items() if not isinstance(v, dict)}
        )

    # -- Loop ---------------------------------------------------------------------------------------
    def online_eval(done: int, state: step_lib.TrainState) -> None:
        if config.eval.every_steps and done % config.eval.every_steps == 0 and done != total_steps:
            _online_eval(config, eval_data, graphdef, state, None, mesh, writer, workdir, done)

    t0 = time.time()
    state, summary = loop.train(
        train_step,
        state,
        batches,
        jax.random.key(config.seed),
        mesh=mesh,
        saver=saver,
        writer=writer,
        workdir=workdir,
        start_step=start_step,
        total_steps=total_steps,
        global_batch_size=config.global_batch_size,
        log_every_steps=config.log_every_steps,
        save_at=lambda done: done % config.checkpoint_every_steps == 0,
        learning_rates={"learning_rate": schedule},
        after_step=online_eval if eval_data is not None else None,
        profile_steps=config.profile_steps,
    )
    if eval_data is not None:
        summary["probe"] = _online_eval(
            config, eval_data, graphdef, state, initial, mesh, writer, workdir, total_steps
        )
    summary["wall_seconds"] = time.time() - t0
    writer.flush()
    return summary


def _drop_metrics_after(workdir: str, step: int) -> None:
    """Rewrite `metrics.jsonl` (atomically) without the rows of steps after `step`: those of a
    run that went past its last checkpoint, which the resumed run logs again."""
    path = os.path.join(workdir, loop.METRICS_FILE)
    if not os.path.exists(path):
        return
    with open(path) as file:
        lines = file.read().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        atomic_file.write_text(path, "".join(line + "\n" for line in kept))


def _online_eval(config, eval_data, graphdef, state, initial, mesh, writer, workdir, step):
    """Probe accuracy (pretrain) or classifier top-1 (supervised) on `eval_data`
    (`config.eval.dataset`).

    Scalars go to the writer and, on process 0, to `metrics.jsonl` as
    `{"step": …, "eval/<method>_<modality>_top1": …}`.
    """
    states = {"trained": (state.params, state.batch_stats)}
    if initial is not None:
        states["random init"] = initial
    evaluate = (
        classification.top1_accuracies if config.mode == "supervised" else probe.probe_accuracies
    )
    table = evaluate(config, graphdef, states, eval_data, mesh)
    scalars = {
        f"eval/{config.eval.method}_{modality}_top1": acc
        for modality, acc in table["trained"].items()
    }
    writer.write_scalars(step, scalars)
    loop.append_metrics(workdir, step, scalars)
    if jax.process_index() == 0:
        print(format_probe_table(config, table), flush=True)
    return table


def format_probe_table(config, table: dict[str, dict[str, float]]) -> str:
    modalities = list(next(iter(table.values())))
    head = f"{config.eval.method} top-1 (%) on {config.eval.dataset} {config.eval.test_split}"
    lines = [head, f"{'model':<14}" + "".join(f"{m:>10}" for m in modalities)]
    for name, accs in table.items():
        lines.append(f"{name:<14}" + "".join(f"{accs[m]:>10.1f}" for m in modalities))
    return "\n".join(lines)
