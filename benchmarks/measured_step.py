"""The train step the benchmarks measure, built from shapes: the config (`configs/sota.py`, or
the slim `tests/tiny.py`), the candidate speed-ups (`ModelOptions`), the model and a shape-only
`TrainState`, and `stica_jax.step.make_train_step` lowered with the shardings the timing places
data with (`lower_step`). `train_step.py` times and counts it, `hlo_stats.py` counts what it
compiles to; the same lowering in both is what makes a compile-only process fill the persistent
cache for the timing one.

Imports no TensorFlow, tensorflow-datasets or clu.
"""

import argparse
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from stica_jax import step
from stica_jax.models.layers import configure_batch_norm, configure_convolutions
from stica_jax.models.stica import build_model
from stica_jax.shapes import input_shapes


def load_config(tiny: bool, dtype: str | None = None) -> Any:
    """The SOTA config or the slim test config, with `model.dtype` optionally overridden."""
    if tiny:
        from tests.tiny import tiny_config

        config = tiny_config()
    else:
        from configs import sota

        config = sota.get_config()
    if dtype:
        config.model.dtype = dtype
    return config


def benchmark_optimizer() -> Any:
    """The pretraining optimizer (torch-style SGD + momentum + weight decay), warmup schedule."""
    schedule = step.learning_rate_schedule(
        base_lr=0.01, warmup_start_lr=0.0, warmup_steps=100, total_steps=10_000
    )
    return step.make_optimizer(schedule)


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """The candidate speed-ups of the step (all off: the model as `configs/sota.py` builds it)."""

    bn_one_pass: bool = False
    bn_sync: str = "global"
    conv_channel_multiple: int = 0
    video_dtype: str = "float32"
    sum_grads_once: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ModelOptions":
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def apply(self, model: nnx.Module) -> nnx.Module:
        configure_batch_norm(model, one_pass=self.bn_one_pass, sync=self.bn_sync)
        configure_convolutions(model, channel_multiple=self.conv_channel_multiple)
        return model


def new_model(config: Any, seed: int = 0, options: ModelOptions = ModelOptions()) -> nnx.Module:
    model = build_model(config.model, config.crops, axis_name=step.MESH_AXIS, rngs=nnx.Rngs(seed))
    return options.apply(model)


def abstract_train_state(
    config: Any, optimizer: Any, options: ModelOptions = ModelOptions()
) -> tuple[nnx.GraphDef, step.TrainState]:
    """Graph definition and a shape-only `TrainState` (nothing allocated)."""
    model = nnx.eval_shape(lambda: new_model(config, 0, options))
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return graphdef, step.TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=jax.eval_shape(optimizer.init, params),
    )


def abstract_batch(
    config: Any, global_batch: int, video_dtype: str = "float32", sharding: Any = None
) -> dict[str, jax.ShapeDtypeStruct]:
    video, audio = input_shapes(config.input, global_batch)
    vdt = jnp.dtype(video_dtype)
    return {
        "video1": jax.ShapeDtypeStruct(video, vdt, sharding=sharding),
        "video2": jax.ShapeDtypeStruct(video, vdt, sharding=sharding),
        "audio": jax.ShapeDtypeStruct(audio, jnp.float32, sharding=sharding),
        "index": jax.ShapeDtypeStruct((global_batch,), jnp.int32, sharding=sharding),
    }


def lower_step(
    config: Any, mesh: jax.sharding.Mesh, per_device_batch: int, options: ModelOptions
) -> Any:
    """The train step lowered from shapes with the shardings `train_step.run_batch_size` places
    data with, so its compilation is the one a timing process looks up in the persistent cache."""
    optimizer = benchmark_optimizer()
    graphdef, state = abstract_train_state(config, optimizer, options)
    replicated = NamedSharding(mesh, P())
    state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state
    )
    batch = abstract_batch(
        config, per_device_batch * mesh.size, options.video_dtype, step.batch_sharding(mesh)
    )
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)
    train_step = step.make_train_step(
        graphdef,
        optimizer,
        step.LossConfig.from_config(config.loss),
        mesh,
        per_device_batch_norm=options.bn_sync == "device",
        sum_grads_once=options.sum_grads_once,
    )
    return train_step.lower(state, batch, key)
