"""Clips/s and model FLOP utilisation (MFU) of the STiCA train step on synthetic batches.

  python -m benchmarks.train_step [--batch_sizes=4,8,16] [--steps=20] [--warmup=3]
      [--peak_tflops=989] [--tiny] [--dtype=bfloat16] [--devices=N] [--cpu_devices=N]
      [--time_budget_s=0] [--json=PATH] [--variant=NAME]
      [--bn_one_pass] [--bn_sync=global|device] [--conv_channel_multiple=8]
      [--video_dtype=float32|bfloat16] [--compilation_cache_dir=DIR] [--compile_only]
      [--profile_dir=DIR] [--profile_steps=3] [--hlo_stats]

For each per-device batch size: builds the `configs/sota.py` model (60 frames at 112², 2-s
257×199 log-mel, `model.dtype` bfloat16; `--tiny`: the slim test config of `tests/tiny.py`),
replicates a fresh `TrainState` over a one-axis `data` mesh, places one synthetic global batch
(random normal `video1`, `video2` `[B, T, S, S, 3]`, `audio` `[B, F, T_a, 1]`, `index` int32)
on the devices once, compiles `stica_jax.step.make_train_step` ahead of time (`compile_s`,
excluded from the timing), runs `--warmup` steps, then times `--steps` steps, dispatched
back to back and closed by one `jax.block_until_ready`. Prints one line per batch size and a
final `summary:` line. An out-of-memory batch size is reported as `OOM` and the larger ones
are skipped; any other error is reported and the script exits non-zero at the end, as it does
when a step's loss or gradient is not finite.

FLOPs are 2 × the multiply-adds of the convolutions and matrix products, counted per device on
the traced computation (elementwise work, BatchNorm, softmax and the optimizer not counted):
  MFU        = 3 × forward FLOPs per step / step time / peak  (the usual fwd+bwd ≈ 3×fwd rule;
               forward = `stica_jax.models.summary.count_macs` of the loss, both views, audio,
               crops, heads and the NCE products over the gathered batch)
  MFU_traced = FLOPs of the traced forward + backward step / step time / peak, skipping the
               zeros that the input gradient of a strided convolution multiplies (≈ 2.99×fwd
               for SOTA: the first convolution needs no input gradient)
`--peak_tflops` is per device: 989 = H100 SXM (and H200) dense bf16.

Candidate speed-ups, each behind its own flag so one can be measured at a time (a `--variant`
name labels the run): `--bn_one_pass` and `--bn_sync=device` (`layers.configure_batch_norm`),
`--conv_channel_multiple=8` (`layers.configure_convolutions`), `--sum_grads_once`
(`step.make_train_step`: one float32 gradient psum per parameter), `--video_dtype=bfloat16` (the
step takes bf16 video: half the host→device bytes; `h2d_ms` times one batch's transfer in f32
and bf16 whatever the flag). `--compilation_cache_dir` turns on JAX's persistent compilation
cache there (and with it XLA's per-fusion autotune cache, `jax_persistent_cache_enable_xla_caches`),
so a second process compiles the same program from the cache (`compile_s` is then the load);
`--compile_only` compiles each batch size ahead of time from shapes (nothing on the device) and
stops: `gpu.sh` fills the cache that way on spare CPU cores while the GPU runs something else.
`--profile_dir` traces `--profile_steps` more steps of the first batch size with
`jax.profiler` and prints the device time per kernel category (`profile_summary.py`);
`--hlo_stats` prints the fusion / convolution / copy / collective counts of the optimised
program (`hlo_stats.py`).

Imports no TensorFlow, tensorflow-datasets or clu: it runs on hosts with only JAX, Flax and
optax (+ ml_collections for the config, absl-py and PyYAML being its needs).
"""

import argparse
import gc
import json
import os
import sys
import time
import traceback
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from benchmarks import profile_summary
from benchmarks.measured_step import (
    ModelOptions,
    abstract_batch,
    abstract_train_state,
    benchmark_optimizer,
    load_config,
    lower_step,
    new_model,
)
from data_pipeline import atomic_file
from data_pipeline.errors import error_line
from stica_jax import hlo, step
from stica_jax.models.layers import BATCH_NORM_SYNC
from stica_jax.models.summary import count_macs
from stica_jax.shapes import input_shapes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--batch_sizes",
        default="4,8,16",
        help="comma-separated per-device batch sizes, run in this order",
    )
    p.add_argument("--steps", type=int, default=20, help="timed steps per batch size")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after compiling")
    p.add_argument(
        "--peak_tflops",
        type=float,
        default=989.0,
        help="peak dense TFLOP/s per device for MFU (989: H100 SXM / H200 bf16)",
    )
    p.add_argument("--tiny", action="store_true", help="the slim test config (tests/tiny.py)")
    p.add_argument(
        "--dtype",
        default=None,
        help="override model.dtype (default: the config's; sota bfloat16, tiny float32)",
    )
    p.add_argument("--devices", type=int, default=0, help="use the first N devices (0: all)")
    p.add_argument(
        "--cpu_devices",
        type=int,
        default=0,
        help="run on N fake CPU devices (jax_num_cpu_devices; before JAX starts)",
    )
    p.add_argument(
        "--time_budget_s",
        type=float,
        default=0.0,
        help="skip the remaining batch sizes once this is likely to be exceeded (0: off)",
    )
    p.add_argument(
        "--keep_going_after_oom",
        action="store_true",
        help="still try the larger batch sizes after one ran out of memory",
    )
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", default="baseline", help="a label for this run's options")
    p.add_argument("--bn_one_pass", action="store_true", help="one-pass BN statistics")
    p.add_argument("--bn_sync", default="global", choices=BATCH_NORM_SYNC, help="BN statistics")
    p.add_argument(
        "--conv_channel_multiple", type=int, default=0, help="pad conv channels (0: off)"
    )
    p.add_argument("--video_dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument(
        "--sum_grads_once",
        action="store_true",
        help="one float32 psum per parameter gradient (not one per use, in bf16)",
    )
    p.add_argument("--compilation_cache_dir", default=None, help="JAX persistent compilation cache")
    p.add_argument("--compile_only", action="store_true", help="compile from shapes, time nothing")
    p.add_argument("--profile_dir", default=None, help="jax.profiler trace of a few steps")
    p.add_argument("--profile_steps", type=int, default=3)
    p.add_argument(
        "--profile_batch", type=int, default=0, help="batch size to profile (0: the first)"
    )
    p.add_argument("--hlo_stats", action="store_true", help="counts of the optimised program")
    args = p.parse_args(argv)
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b.strip()]
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error("--batch_sizes needs positive integers")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


def step_macs(
    config: Any,
    per_device_batch: int,
    mesh: jax.sharding.Mesh,
    options: ModelOptions = ModelOptions(),
) -> dict[str, int]:
    """Multiply-adds per device and step: `forward` (loss) and `train_step` (fwd + bwd).

    Traced on shapes only, inside the same `shard_map` as the step, so the shapes are the
    per-device ones and the loss's similarity products over the all-gathered batch count.
    Always the model as configured: padded channels (`conv_channel_multiple`) multiply zeros,
    which are not model FLOPs.
    """
    del options  # the useful work does not depend on the options
    optimizer = benchmark_optimizer()
    graphdef, state = abstract_train_state(config, optimizer)
    batch = abstract_batch(config, per_device_batch * mesh.size)
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
    loss_config = step.LossConfig.from_config(config.loss)
    forward = jax.shard_map(
        step.make_loss_fn(graphdef, loss_config),
        mesh=mesh,
        in_specs=(P(), P(), P(step.MESH_AXIS), P()),
        out_specs=P(),
    )
    train_step = step.make_train_step(graphdef, optimizer, loss_config, mesh)
    return {
        "forward": count_macs(forward, state.params, state.batch_stats, batch, key),
        "train_step": count_macs(train_step, state, batch, key),
    }


def synthetic_batch(
    config: Any, global_batch: int, seed: int = 0, video_dtype: str = "float32"
) -> dict[str, np.ndarray]:
    """Random normal inputs; each sample gets its own per-channel offset and scale (pure
    white noise gives near-identical pooled features, see tests/tiny.py)."""
    video_shape, audio_shape = input_shapes(config.input, global_batch)
    rng = np.random.default_rng(seed)

    def sample(shape):
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= rng.uniform(0.5, 1.5, (shape[0],) + (1,) * (len(shape) - 1)).astype(np.float32)
        x += rng.standard_normal(
            (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],), dtype=np.float32
        )
        return x

    vdt = jnp.dtype(video_dtype)
    return {
        "video1": sample(video_shape).astype(vdt),
        "video2": sample(video_shape).astype(vdt),
        "audio": sample(audio_shape),
        "index": np.arange(global_batch, dtype=np.int32),
    }


def host_to_device_ms(host_batch: dict[str, np.ndarray], sharding: Any, repeats: int = 3) -> float:
    """Best-of-`repeats` milliseconds to place one global batch on the devices."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        placed = jax.block_until_ready(jax.device_put(host_batch, sharding))
        best = min(best, time.perf_counter() - start)
        del placed
    return 1e3 * best


def batch_megabytes(host_batch: dict[str, np.ndarray]) -> float:
    return sum(x.nbytes for x in host_batch.values()) / 1e6


def is_oom(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return any(
        s in text
        for s in (
            "RESOURCE_EXHAUSTED",
            "Out of memory",
            "out of memory",
            "OutOfMemory",
            "OOM when allocating",
        )
    )


def _peak_memory_gib(devices: list[jax.Device]) -> float | None:
    try:
        stats = [d.memory_stats() for d in devices]
    except Exception:  # noqa: BLE001  (not every backend has memory statistics)
        return None
    peaks = [s.get("peak_bytes_in_use") for s in stats if s]
    return max(peaks) / 2**30 if peaks and None not in peaks else None


def _xla_flops(compiled: Any) -> float | None:
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"])
    except Exception:  # noqa: BLE001  (optional cross-check)
        return None


def run_batch_size(
    config: Any,
    host_state: step.TrainState,
    graphdef: nnx.GraphDef,
    optimizer: Any,
    mesh: jax.sharding.Mesh,
    per_device_batch: int,
    args: argparse.Namespace,
    macs: dict[str, int],
    profile_dir: str | None = None,
) -> dict[str, Any]:
    """Compile, warm up and time the train step at one per-device batch size."""
    global_batch = per_device_batch * mesh.size
    replicated = NamedSharding(mesh, P())
    host_batch = synthetic_batch(config, global_batch, args.seed, args.video_dtype)
    batch = jax.device_put(host_batch, step.batch_sharding(mesh))
    state = jax.device_put(host_state, replicated)
    keys = jax.device_put(
        jax.random.split(jax.random.key(args.seed), args.warmup + args.steps), replicated
    )
    keys = [keys[i] for i in range(args.warmup + args.steps)]
    jax.block_until_ready((batch, state, keys))

    train_step = step.make_train_step(
        graphdef,
        optimizer,
        step.LossConfig.from_config(config.loss),
        mesh,
        per_device_batch_norm=args.bn_sync == "device",
        sum_grads_once=args.sum_grads_once,
    )
    start = time.perf_counter()
    compiled = train_step.lower(state, batch, keys[0]).compile()
    compile_s = time.perf_counter() - start
    # Printed now too: a run stopped by its time limit still shows how long it compiled.
    print(f"compiled: batch/device={per_device_batch} compile_s={compile_s:.1f}", flush=True)

    metrics = []
    for i in range(args.warmup):
        state, m = compiled(state, batch, keys[i])
        metrics.append(m)
    jax.block_until_ready((state, metrics))
    start = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        state, m = compiled(state, batch, keys[i])
        metrics.append(m)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - start

    profile = None
    if profile_dir:
        profile = profile_steps(compiled, state, batch, keys, args, profile_dir)
        state = profile.pop("state")
    hlo = None
    if args.hlo_stats or profile_dir:
        text = compiled.as_text()
        hlo = hlo.stats(text)
        print(hlo.format_stats(hlo, f"optimised HLO ({mesh.size} devices)"), flush=True)
    # Host→device bytes and time of one global batch, video as float32 and as bfloat16.
    h2d = {}
    for dt in ("float32", "bfloat16"):
        hb = dict(
            host_batch, **{k: host_batch[k].astype(jnp.dtype(dt)) for k in ("video1", "video2")}
        )
        h2d[dt] = {
            "ms": host_to_device_ms(hb, step.batch_sharding(mesh)),
            "mb": batch_megabytes(hb),
        }
        del hb

    metrics = jax.device_get(metrics)
    losses = [float(m["loss"]) for m in metrics]
    grad_norms = [float(m["grad_norm"]) for m in metrics]
    finite = all(float(m["finite"]) == 1.0 for m in metrics) and bool(
        np.all(np.isfinite(losses)) and np.all(np.isfinite(grad_norms))
    )
    step_s = seconds / args.steps
    peak = args.peak_tflops * 1e12
    result = {
        "batch_per_device": per_device_batch,
        "global_batch": global_batch,
        "devices": mesh.size,
        "status": "ok",
        "steps": args.steps,
        "warmup": args.warmup,
        "compile_s": compile_s,
        "step_ms": 1e3 * step_s,
        "clips_per_s": global_batch / step_s,
        "macs_forward_per_device": macs["forward"],
        "macs_train_step_per_device": macs["train_step"],
        "tflops_per_s_per_device": 2 * macs["train_step"] / step_s / 1e12,
        "mfu": 3 * 2 * macs["forward"] / step_s / peak,
        "mfu_traced": 2 * macs["train_step"] / step_s / peak,
        "xla_flops_per_device": _xla_flops(compiled),
        "peak_memory_gib": _peak_memory_gib(list(mesh.devices.flat)),
        "loss_first": losses[0],
        "loss": losses[-1],
        "grad_norm": grad_norms[-1],
        "finite": finite,
        "variant": args.variant,
        "options": ModelOptions.from_args(args).asdict(),
        "h2d": h2d,
        "hlo": hlo,
        "profile": profile,
    }
    del state, batch, metrics, compiled
    return result


def profile_steps(compiled, state, batch, keys, args, profile_dir: str) -> dict[str, Any]:
    """`jax.profiler` trace of `--profile_steps` steps, summarised by kernel category."""
    import glob
    import gzip

    os.makedirs(profile_dir, exist_ok=True)
    hlo_text = compiled.as_text()
    # Kept with the trace, so `profile_summary.py TRACE --hlo=…` can re-categorise it later.
    with gzip.open(os.path.join(profile_dir, "optimised_hlo.txt.gz"), "wt") as f:
        f.write(hlo_text)
    jax.block_until_ready(state)
    with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
        for i in range(args.profile_steps):
            state, m = compiled(state, batch, keys[i % len(keys)])
        jax.block_until_ready((state, m))
    traces = sorted(
        glob.glob(os.path.join(profile_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    )
    summary = profile_summary.summarize_trace(
        traces[-1],
        steps=args.profile_steps,
        hlo_categories=hlo.categories(hlo_text),
    )
    print(profile_summary.format_summary(summary, title="jax.profiler"), flush=True)
    with open(os.path.join(profile_dir, "jax_profile_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return dict(summary, trace=traces[-1], state=state)


def format_result(r: dict[str, Any]) -> str:
    head = f"batch/device={r['batch_per_device']}"
    if r["status"] != "ok":
        return f"{head} {r['status']}" + (f" ({r['error']})" if r.get("error") else "")
    mem = "" if r["peak_memory_gib"] is None else f" peak_mem_GiB={r['peak_memory_gib']:.1f}"
    return (
        f"{head} global_batch={r['global_batch']} clips/s={r['clips_per_s']:.2f} "
        f"step_ms={r['step_ms']:.2f} MFU={100 * r['mfu']:.3g}% "
        f"MFU_traced={100 * r['mfu_traced']:.3g}% "
        f"TFLOP/s/device={r['tflops_per_s_per_device']:.3g} "
        f"GFLOP/step/device={2 * r['macs_train_step_per_device'] / 1e9:.4g} compile_s={r['compile_s']:.1f} "
        f"loss={r['loss']:.4f} grad_norm={r['grad_norm']:.4g} "
        f"finite={'yes' if r['finite'] else 'NO'}{mem} "
        f"h2d_ms={r['h2d']['float32']['ms']:.1f}/{r['h2d']['bfloat16']['ms']:.1f} "
        f"h2d_MB={r['h2d']['float32']['mb']:.0f}/{r['h2d']['bfloat16']['mb']:.0f}"
    )


def _host_cpu() -> jax.Device | None:
    try:
        return jax.devices("cpu")[0]
    except RuntimeError:  # no CPU backend (jax_platforms without cpu): the default device
        return None


def write_json(path: str | None, data: dict[str, Any]) -> None:
    """Rewritten after every batch size, so a run cut short keeps what it measured (atomically,
    through a temporary file of this process's own)."""
    if not path:
        return
    atomic_file.write_text(path, json.dumps(data, indent=1))


def enable_compilation_cache(path: str) -> None:
    """JAX's persistent compilation cache in `path`, for every program however fast it
    compiled; JAX then also points XLA's per-fusion autotune cache into it."""
    jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def cached_step_macs(
    config: Any, per_device_batch: int, mesh: jax.sharding.Mesh, args: argparse.Namespace
) -> dict[str, int]:
    """`step_macs`, kept beside the compilation cache when there is one: tracing the SOTA step
    twice takes seconds that a compile-only process can spend instead of the timing one."""
    if not args.compilation_cache_dir:
        return step_macs(config, per_device_batch, mesh)
    name = "tiny" if args.tiny else "sota"
    path = os.path.join(
        args.compilation_cache_dir,
        "stica_macs",
        f"{name}_{config.model.dtype}_{per_device_batch}x{mesh.size}.json",
    )
    try:
        with open(path) as f:
            return {k: int(v) for k, v in json.load(f).items()}
    except (OSError, ValueError):
        macs = step_macs(config, per_device_batch, mesh)
        write_json(path, macs)
        return macs


def compile_only(config, mesh, args, options, header, t_start) -> dict[str, Any]:
    """Compile each batch size's step from shapes (fills the persistent cache); time nothing."""
    results = []
    for b in args.batch_sizes:
        try:
            cached_step_macs(config, b, mesh, args)
            start = time.perf_counter()
            lower_step(config, mesh, b, options).compile()
            r = {
                "batch_per_device": b,
                "status": "compiled",
                "compile_s": time.perf_counter() - start,
            }
        except Exception as e:  # noqa: BLE001  (one batch size must not end the run)
            traceback.print_exc()
            r = {"batch_per_device": b, "status": "ERROR", "error": error_line(e)[:300]}
        results.append(r)
        extra = f" compile_s={r['compile_s']:.1f}" if "compile_s" in r else f" ({r.get('error')})"
        print(f"batch/device={b} {r['status']}{extra} variant={args.variant}", flush=True)
        write_json(args.json, dict(header, results=results, ok=None, summary=None))
    ok = all(r["status"] == "compiled" for r in results)
    summary = (
        f"summary: compile_only variant={args.variant} "
        f"compile_s={[round(r.get('compile_s', -1), 1) for r in results]} "
        f"total_s={time.perf_counter() - t_start:.1f} {'OK' if ok else 'FAILED'}"
    )
    print(summary, flush=True)
    out = dict(header, results=results, ok=ok, summary=summary)
    write_json(args.json, out)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark, prints its lines, returns `{"config": …, "results": [...], "ok": bool}`."""
    args = parse_args(argv)
    if args.cpu_devices:
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    if args.compilation_cache_dir:
        enable_compilation_cache(args.compilation_cache_dir)
    options = ModelOptions.from_args(args)
    t_start = time.perf_counter()
    devices = jax.devices()[: args.devices] if args.devices else jax.devices()
    mesh = step.make_mesh(devices)
    config = load_config(args.tiny, args.dtype)
    name = "tiny" if args.tiny else "sota"
    video_shape, audio_shape = input_shapes(config.input, 1)
    print(
        f"train_step benchmark: config={name} dtype={config.model.dtype} "
        f"video={video_shape[1:]} audio={audio_shape[1:]} devices={len(devices)}x "
        f"{devices[0].device_kind} ({devices[0].platform}) jax={jax.__version__} "
        f"steps={args.steps} warmup={args.warmup} peak={args.peak_tflops:g} TFLOP/s/device "
        f"variant={args.variant} options={options.asdict()} "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        flush=True,
    )
    print(
        "FLOPs = 2 x MACs of convolutions and matrix products per device; "
        "MFU = 3 x forward FLOPs (fwd+bwd ~ 3x fwd); MFU_traced = traced fwd+bwd FLOPs",
        flush=True,
    )

    header = {
        "config": name,
        "dtype": config.model.dtype,
        "device_kind": devices[0].device_kind,
        "platform": devices[0].platform,
        "devices": len(devices),
        "jax": jax.__version__,
        "peak_tflops": args.peak_tflops,
        "steps": args.steps,
        "warmup": args.warmup,
        "variant": args.variant,
        "options": options.asdict(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "compilation_cache_dir": args.compilation_cache_dir,
    }
    if args.compile_only:
        return compile_only(config, mesh, args, options, header, t_start)
    optimizer = benchmark_optimizer()
    # Initialised op by op on the host CPU (fast there; on a GPU each op would compile), then
    # kept as numpy: every batch size gets a fresh replicated copy (the step donates it).
    with jax.default_device(_host_cpu()):
        graphdef, host_state = step.init_train_state(
            new_model(config, args.seed, options), optimizer
        )
        host_state = jax.device_get(host_state)

    results, previous_s, stop_reason, profile_dir = [], 0.0, None, args.profile_dir
    for b in args.batch_sizes:
        start = time.perf_counter()
        elapsed = start - t_start
        if (
            stop_reason is None
            and args.time_budget_s
            and previous_s
            and (elapsed + 1.5 * previous_s > args.time_budget_s)
        ):
            stop_reason = "skipped (time budget)"
        if stop_reason is not None:
            r = {"batch_per_device": b, "status": stop_reason}
        else:
            try:
                macs = cached_step_macs(config, b, mesh, args)
                here = profile_dir if args.profile_batch in (0, b) else None
                r = run_batch_size(
                    config, host_state, graphdef, optimizer, mesh, b, args, macs, here
                )
                profile_dir = None if here else profile_dir
            except Exception as e:  # noqa: BLE001  (one batch size must not end the run)
                if is_oom(e):
                    r = {"batch_per_device": b, "status": "OOM", "error": error_line(e)[:300]}
                    if not args.keep_going_after_oom:
                        stop_reason = "skipped (a smaller batch ran out of memory)"
                else:
                    traceback.print_exc()
                    r = {"batch_per_device": b, "status": "ERROR", "error": error_line(e)[:300]}
            gc.collect()
            previous_s = time.perf_counter() - start
        r["wall_s"] = time.perf_counter() - start
        results.append(r)
        print(format_result(r), flush=True)
        write_json(args.json, dict(header, results=results, ok=None, summary=None))

    done = [r for r in results if r["status"] == "ok"]
    ok = (
        bool(done)
        and all(r["finite"] for r in done)
        and not any(r["status"] == "ERROR" for r in results)
    )
    best = max(done, key=lambda r: r["clips_per_s"]) if done else None
    oom = [r["batch_per_device"] for r in results if r["status"] == "OOM"]
    summary = (
        f"summary: config={name} variant={args.variant} dtype={config.model.dtype} "
        f"devices={len(devices)}x "
        f"{devices[0].device_kind} "
    )
    if best:
        summary += (
            f"best clips/s={best['clips_per_s']:.2f} "
            f"({best['clips_per_s'] / len(devices):.2f}/device) at "
            f"batch/device={best['batch_per_device']} step_ms={best['step_ms']:.2f} "
            f"MFU={100 * best['mfu']:.3g}% MFU_traced={100 * best['mfu_traced']:.3g}% "
        )
    else:
        summary += "no batch size ran "
    summary += (
        f"ran={[r['batch_per_device'] for r in done]} oom={oom} "
        f"total_s={time.perf_counter() - t_start:.1f} {'OK' if ok else 'FAILED'}"
    )
    print(summary, flush=True)

    out = dict(header, results=results, ok=ok, summary=summary)
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
