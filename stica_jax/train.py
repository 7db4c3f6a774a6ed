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
import ml_collections
import optax
from absl import logging
from clu import metric_writers
from flax import nnx

from data_pipeline import atomic_file, pipeline
from data_pipeline.datasets import PreparedDataset
from stica_jax import checkpointing, config_checks, data, loop, step as step_lib, workdir_lock
from stica_jax.errors import ConfigError
from stica_jax.evaluate import classification, probe
from stica_jax.models import build_train_model

# ---------------------------------------------------------------------------------------------
# Config checks (before anything compiles): stica_jax/config_checks.py
# ---------------------------------------------------------------------------------------------


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
    config_checks.validate_config(
        config, num_devices=jax.device_count(), num_processes=jax.process_count()
    )
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
