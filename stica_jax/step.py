"""The data-parallel STiCA train step: `jax.jit(jax.shard_map(...))` over the `data` mesh axis.

The step is a pure function `(state, batch, rng) → (state, metrics)`. Inside `shard_map`
each device holds a shard of the global batch and a replica of the state; BatchNorm
statistics are averaged over the axis (SyncBN), the loss all-gathers embeddings over it,
and the loss it differentiates is already the global mean (`pmean`), so the gradient
(summed over devices by the transpose of the implicit replication) is the gradient of the
global-batch loss. Per-sample randomness comes from `fold_in(rng, global_sample_index)`.
The same step trains either mode: STiCA pretraining or supervised classification (the
loss config picks the loss; the graph is a `STiCA` or a `VideoClassifier` accordingly).
This module imports no TensorFlow: it runs on accelerator hosts that only have JAX.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from stica_jax.losses import classification_loss, stica_loss

MESH_AXIS = "data"


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named `data` over `devices` (default: every device of every host)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh(
        (len(devices),), (MESH_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`."""
    return NamedSharding(mesh, P(MESH_AXIS))


def global_batch(local_batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Global arrays from this host's slice of the batch (rows in process order)."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def sample_keys(rng: jax.Array, index: jax.Array) -> jax.Array:
    """One PRNG key per sample from its global index `[B]` — never from the device id."""
    return jax.vmap(lambda i: jax.random.fold_in(rng, i))(index)


@struct.dataclass
class TrainState:
    """Everything that changes during training; replicated over the mesh."""

    step: jax.Array
    params: nnx.State
    batch_stats: nnx.State
    opt_state: optax.OptState


@dataclasses.dataclass(frozen=True)
class LossConfig:
    cross_modal_weight: float = 0.5
    av_temperature: float = 0.1
    crop_temperature: float = 0.5
    crop_pairs: str = "official"  # or "all" (spec §6, `losses.crop_nce_terms`)
    detach_keys: bool = False

    @classmethod
    def from_config(cls, cfg: Any) -> "LossConfig":
        return cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class SupervisedLossConfig:
    """The loss of `mode="supervised"`: cross-entropy, crops weighted by `crop_loss_weight`."""

    crop_loss_weight: float = 0.5

    @classmethod
    def from_config(cls, cfg: Any) -> "SupervisedLossConfig":
        return cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls)})


def loss_config_for(config: Any) -> LossConfig | SupervisedLossConfig:
    """The loss of a whole config's `mode`: STiCA's ("pretrain") or cross-entropy ("supervised")."""
    if config.get("mode", "pretrain") == "supervised":
        return SupervisedLossConfig.from_config(config.supervised)
    return LossConfig.from_config(config.loss)


def make_loss_fn(
    graphdef: nnx.GraphDef,
    loss_config: LossConfig | SupervisedLossConfig,
    axis_name: str | None = MESH_AXIS,
    *,
    frozen_modules: tuple[str, ...] = (),
) -> Callable:
    """`loss_fn(params, batch_stats, batch, rng, *others) → (loss, (aux, new_batch_stats))`.

    `batch` holds the local shard. Pretraining (`LossConfig`, a `STiCA` graph): `video1`,
    `video2` `[B, T, H, W, 3]`, `audio` `[B, F, T_a, 1]`, `index` `[B]` global sample indices.
    Supervised (`SupervisedLossConfig`, a `VideoClassifier` graph): `video` `[B, T, H, W, 3]`,
    `label` `[B]`, `index` `[B]`. `others`: the parameters that are not differentiated (the
    frozen part of a linear probe). `frozen_modules`: top-level submodules that run in
    inference mode (BatchNorm on its running statistics, never updated; no dropout).
    """

    def loss_fn(params, batch_stats, batch, rng, *others):
        # copy: fresh Variables at this trace level, so BatchNorm may update them here.
        model = nnx.merge(graphdef, params, *others, batch_stats, copy=True)
        model.train()
        for name in frozen_modules:
            getattr(model, name).eval()
        keys = sample_keys(rng, batch["index"])
        if isinstance(loss_config, SupervisedLossConfig):
            outputs = model.training_outputs(batch["video"], keys)
            loss, aux = classification_loss(
                outputs["logits"],
                batch["label"],
                outputs.get("crop_logits"),
                axis_name=axis_name,
                **dataclasses.asdict(loss_config),
            )
        else:
            outputs = model(batch["video1"], batch["video2"], batch["audio"], keys)
            loss, aux = stica_loss(outputs, axis_name=axis_name, **dataclasses.asdict(loss_config))
        return loss, (aux, nnx.state(model, nnx.BatchStat))

    return loss_fn


def average_batch_stats(batch_stats: nnx.State, axis_name: str = MESH_AXIS) -> nnx.State:
    """The mean over devices of per-device running statistics.

    Only for BatchNorm on each device's shard alone (`layers.configure_batch_norm(sync=
    "device")`): its running statistics differ between devices, and the replicated state
    keeps their mean. SyncBN's statistics are equal everywhere and need no averaging.
    """
    return jax.tree.map(lambda x: jax.lax.pmean(x, axis_name), batch_stats)


def _per_device_copies(params: nnx.State, axis_name: str = MESH_AXIS) -> nnx.State:
    """The replicated parameters as per-device values (`pcast` to varying, no data moved).

    The gradient of such a copy is this device's share alone; `psum`ing it once per parameter
    (float32) replaces the sums JAX's transpose otherwise places at every use of a parameter,
    in the compute dtype: bfloat16 sums, and one per use of a weight that is used several times
    (the pooling and head run once per view and crop family).
    """
    cast = getattr(jax.lax, "pcast", None)
    if cast is not None:
        return jax.tree.map(lambda p: cast(p, axis_name, to="varying"), params)
    return jax.tree.map(lambda p: jax.lax.pvary(p, axis_name), params)  # older JAX


def value_and_global_grad(
    fn: Callable, *, sum_grads_once: bool, axis_name: str = MESH_AXIS
) -> Callable:
    """Inside `shard_map`: `jax.value_and_grad(fn, has_aux=True)` whose gradient, with respect
    to the replicated first argument, is summed over `axis_name` (the global batch's gradient).

    Where the sum happens: with `sum_grads_once`, once per parameter, in float32 (the
    parameters' dtype), after the uses' gradients are added on each device
    (`_per_device_copies`); otherwise where JAX's transpose puts it, at every use of a
    parameter and in the dtype of that use (bfloat16 under bfloat16 compute).
    """
    grad_fn = jax.value_and_grad(fn, has_aux=True)

    def value_and_grad(params, *args):
        differentiated = _per_device_copies(params, axis_name) if sum_grads_once else params
        out, grads = grad_fn(differentiated, *args)
        if sum_grads_once:
            grads = jax.lax.psum(grads, axis_name)
        return out, grads

    return value_and_grad


def split_trainable(params: nnx.State, trainable: Any = nnx.Param) -> tuple[nnx.State, tuple]:
    """(the parameters `trainable` selects, the others as a 0- or 1-tuple).

    `trainable` is an nnx filter: `nnx.Param` (everything) or e.g.
    `nnx.All(nnx.Param, nnx.PathContains("fc"))` (a linear probe's head).
    """
    if trainable is nnx.Param:
        return params, ()
    selected, rest = nnx.split_state(params, trainable, ...)
    return selected, (rest,)


def _make_per_device_grads(
    graphdef: nnx.GraphDef,
    loss_config: LossConfig | SupervisedLossConfig,
    *,
    trainable: Any,
    frozen_modules: tuple[str, ...],
    per_device_batch_norm: bool,
    sum_grads_once: bool,
) -> Callable:
    """`(params, batch_stats, batch, rng) → (loss, aux, grads, new_stats, trained_params,
    frozen)` on one device's shard: the one gradient computation of every train step."""
    loss_fn = make_loss_fn(graphdef, loss_config, frozen_modules=frozen_modules)
    grad_fn = value_and_global_grad(loss_fn, sum_grads_once=sum_grads_once)

    def per_device(params, batch_stats, batch, rng):
        params, others = split_trainable(params, trainable)
        (loss, (aux, new_stats)), grads = grad_fn(params, batch_stats, batch, rng, *others)
        if per_device_batch_norm:
            new_stats = average_batch_stats(new_stats)
        return loss, aux, grads, new_stats, params, others

    return per_device


def make_grad_fn(
    graphdef: nnx.GraphDef,
    loss_config: LossConfig | SupervisedLossConfig,
    mesh: Mesh,
    *,
    per_device_batch_norm: bool = False,
    sum_grads_once: bool = False,
) -> Callable:
    """Jitted `(params, batch_stats, batch, rng) → (loss, aux, grads, new_batch_stats)`.

    The global-batch loss and the gradient `make_train_step` applies (the same per-device
    computation), data-parallel over `mesh`, for tests that compare it with a reference.
    """
    per_device_grads = _make_per_device_grads(
        graphdef,
        loss_config,
        trainable=nnx.Param,
        frozen_modules=(),
        per_device_batch_norm=per_device_batch_norm,
        sum_grads_once=sum_grads_once,
    )

    def per_device(params, batch_stats, batch, rng):
        return per_device_grads(params, batch_stats, batch, rng)[:4]

    return jax.jit(
        jax.shard_map(
            per_device,
            mesh=mesh,
            in_specs=(P(), P(), P(MESH_AXIS), P()),
            out_specs=(P(), P(), P(), P()),
        )
    )


def make_train_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    loss_config: LossConfig | SupervisedLossConfig,
    mesh: Mesh,
    *,
    trainable: Any = nnx.Param,
    frozen_modules: tuple[str, ...] = (),
    donate: bool = True,
    per_device_batch_norm: bool = False,
    sum_grads_once: bool = False,
) -> Callable:
    """Jitted pure `train_step(state, batch, rng) → (state, metrics)` over `mesh`: the one train
    step of pretraining, supervised training, fine-tuning and the linear probe.

    `trainable` (an nnx filter) selects the parameters that are differentiated and updated
    (`optimizer`, whose state `init_train_state` made for the same filter, may hold several
    parameter groups with their own learning rates: `make_optimizer`); the others come back
    bit-identical. `frozen_modules` name top-level submodules run in inference mode (a linear
    probe's backbone and pooling: BatchNorm statistics unchanged).
    A step whose loss, gradients or new state (parameters, BatchNorm statistics, optimizer
    state) are not all finite leaves the state unchanged and reports `metrics["finite"] == 0`,
    so the caller can stop before anything broken is saved.
    `per_device_batch_norm`: the model's BatchNorms use each device's shard alone (see
    `average_batch_stats`). `sum_grads_once`: one float32 `psum` per parameter gradient (see
    `value_and_global_grad`) instead of one per use in the compute dtype; the same gradient to
    rounding.
    """
    per_device_grads = _make_per_device_grads(
        graphdef,
        loss_config,
        trainable=trainable,
        frozen_modules=frozen_modules,
        per_device_batch_norm=per_device_batch_norm,
        sum_grads_once=sum_grads_once,
    )

    def per_device(state: TrainState, batch, rng):
        loss, aux, grads, new_stats, params, others = per_device_grads(
            state.params, state.batch_stats, batch, rng
        )
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, params)
        params = optax.apply_updates(params, updates)
        new_state = TrainState(
            step=state.step + 1,
            params=nnx.merge_state(params, *others) if others else params,
            batch_stats=new_stats,
            opt_state=opt_state,
        )
        new_state, finite = keep_if_finite(loss, grad_norm, new_state, state)
        metrics = dict(aux, loss=loss, grad_norm=grad_norm, finite=finite.astype(jnp.float32))
        return new_state, metrics

    return jax.jit(
        jax.shard_map(
            per_device, mesh=mesh, in_specs=(P(), P(MESH_AXIS), P()), out_specs=(P(), P())
        ),
        donate_argnums=(0,) if donate else (),
    )


def keep_if_finite(
    loss: jax.Array, grad_norm: jax.Array, new_state: TrainState, state: TrainState
) -> tuple[TrainState, jax.Array]:
    """(`new_state` if the step is finite, else `state` unchanged; the bool scalar `finite`).

    The rule of every train step: the loss, the gradient norm and every leaf of the new state
    (parameters, BatchNorm statistics, optimizer state) must be finite. A finite loss and
    gradient can still overflow the update (a huge learning rate, a momentum trace growing
    without bound), so the new state is checked too. The loop stops before saving a step whose
    `finite` is 0 (`loop.check_finite`).
    """
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & all_finite(new_state)
    return keep_if(finite, new_state, state), finite


def all_finite(tree: Any) -> jax.Array:
    """bool `[]`: every floating-point value of `tree` is finite.

    One `isfinite`-and-reduce per array, which XLA fuses into a single read of each: the cost
    of reading the train state once per step, next to the step's convolutions.
    """
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def keep_if(ok: jax.Array, new: Any, old: Any) -> Any:
    """`new` if the bool scalar `ok` holds, else `old`: one `lax.cond` over the whole state.

    Not a `jnp.where(ok, ·, ·)` per leaf: XLA fuses the scalar `and` chain behind `ok` (one
    term per leaf, from `all_finite`) into every leaf's select, a copy per leaf, so the program
    grows with the square of the number of leaves, and so does its compile time
    (tests/test_keep_if.py checks the growth; benchmarks/RESULTS.md has the numbers). A
    conditional is not fused into its users: `ok` is computed once.
    """
    return jax.lax.cond(ok, lambda n, o: n, lambda n, o: o, new, old)


def init_train_state(
    model: nnx.Module, optimizer: optax.GradientTransformation, trainable: Any = nnx.Param
) -> tuple[nnx.GraphDef, TrainState]:
    """Split `model` into its graph definition and a fresh `TrainState` (step 0), the optimizer
    state over the `trainable` parameters (as `make_train_step`)."""
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=optimizer.init(split_trainable(params, trainable)[0]),
    )
    return graphdef, state


def learning_rate_schedule(
    *,
    base_lr: float,
    warmup_start_lr: float,
    warmup_steps: int,
    total_steps: int,
    decay: str = "constant",
    final_lr: float = 0.0,
) -> optax.Schedule:
    """Per-step linear warmup from `warmup_start_lr` to `base_lr`, then constant or cosine.

    The warmup is the official `np.linspace(start, base, warmup_steps)`: its first step at
    `warmup_start_lr`, its last (step `warmup_steps - 1`) at `base_lr`, so over
    `warmup_steps - 1` intervals (tests/test_schedule.py compares the two step by step)."""
    warmup = optax.linear_schedule(warmup_start_lr, base_lr, max(warmup_steps - 1, 1))
    if decay == "constant":
        after = optax.constant_schedule(base_lr)
    elif decay == "cosine":
        after = optax.cosine_decay_schedule(
            base_lr,
            max(total_steps - warmup_steps, 1),
            alpha=final_lr / base_lr if base_lr else 0.0,
        )
    else:
        raise ValueError(f"unknown learning-rate decay {decay!r}; expected 'constant' or 'cosine'")
    return optax.join_schedules([warmup, after], [warmup_steps])


def make_optimizer(
    schedule: optax.Schedule, *, momentum: float = 0.9, weight_decay: float = 1e-5
) -> optax.GradientTransformation:
    """torch-style SGD: coupled weight decay (added to the gradient), then heavy-ball momentum."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay), optax.sgd(schedule, momentum=momentum)
    )


def make_group_optimizer(
    groups: dict[str, tuple[optax.Schedule, float]],
    group_of: Callable[[tuple], str],
    *,
    momentum: float = 0.9,
) -> optax.GradientTransformation:
    """torch SGD over parameter groups, each `(schedule, weight_decay)` as `make_optimizer`;
    `group_of(path)` names the group of the parameter at `path` (torch's `param_groups`)."""
    transforms = {
        g: make_optimizer(schedule, momentum=momentum, weight_decay=wd)
        for g, (schedule, wd) in groups.items()
    }

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda path, _: group_of(path), params)

    return optax.multi_transform(transforms, labels)
