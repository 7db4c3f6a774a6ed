"""The STiCA SOTA train step in PyTorch, timed like `benchmarks/train_step.py` times ours.

  python -m benchmarks.torch_baseline [--batch_sizes=8,16,32] [--steps=20] [--warmup=3]
      [--layouts=channels_last_3d,ncdhw] [--modes=eager] [--peak_tflops=989] [--tiny]
      [--dtype=bfloat16] [--device=cuda] [--time_budget_s=0] [--json=PATH]
      [--profile_dir=DIR] [--flops_only]

What a user of the official code (facebookresearch/GDT, `main_stica.py`) would run, on the
work of one `stica_jax` SOTA step (`configs/sota.py`: 60 frames at 112², 257×199 log-mel):
- torchvision `r2plus1d_18` without `fc`, the ResNet-9 audio net (torchvision
  `ResNet(BasicBlock, [1, 1, 1, 1])` with a 1-channel `conv1`), the transformer pooling and
  projection heads of `stica_jax.export.torch_modules` (spec §3, §4);
- one backbone pass per visual view, as the official loop does (it also re-runs the audio net
  per view; here the audio net runs once, as in ours, so both frameworks do the same work);
- feature crops at uniform random positions (spec §5, the config's counts and sizes: SOTA
  space 2×6² + 4×4², time 2×6 + 1×4), each → spatial mean → pooling → head;
- the NCE loss (spec §6): cross-modal τ 0.1, within-modal crop τ 0.5 with the official pairing
  (one large↔large term on large crop 1 of each view + every small crop of view 2 → every
  large crop of view 1), keys detached, `L = ½ L_crops + ½ L_av`, in float32;
- SGD momentum 0.9, weight decay 1e-5 (coupled), `cudnn.benchmark = True` (as the official
  script sets it), AMP bf16 autocast with float32 parameters (`--dtype=float32`: no autocast).

Variants: `--layouts` (`channels_last_3d`: `memory_format=torch.channels_last_3d` for the video
net and its input, `channels_last` for the audio net; `ncdhw`: PyTorch's default contiguous
layout) × `--modes` (`eager`, `compile`: `torch.compile` of the model's forward + loss; the
optimizer step stays eager). Per variant and batch size: fresh model and optimizer, one
synthetic batch on the device, the first step timed as `compile_s` (cuDNN autotuning, or
torch.compile's compilation), `--warmup` steps, then `--steps` steps timed back to back up to
one synchronisation. One line per batch size in train_step.py's format, a `summary:` line per
variant and a final `summary:` line for the best variant; `--json` writes everything.

FLOPs follow train_step.py: 2 × multiply-adds of convolutions and matrix products, counted
here by `torch.utils.flop_counter.FlopCounterMode` on the meta device (no memory, no compute):
`MFU` = 3 × forward FLOPs / step time / peak, `MFU_traced` = counted forward + backward FLOPs.
`tests/test_benchmark_torch_baseline.py` checks that the forward count equals ours.

Imports no JAX: needs torch, torchvision, safetensors (for `torch_modules`) and
ml_collections (to read `configs/sota.py`).
"""

import argparse
import contextlib
import gc
import json
import math
import os
import sys
import time
import traceback
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import profile_summary
from data_pipeline import atomic_file
from data_pipeline.errors import error_line
from stica_jax.export.torch_modules import (
    ProjectionHead,
    TransformerPool,
    audio_backbone,
    audio_map,
    video_backbone,
    video_map,
)
from stica_jax.shapes import input_shapes

LAYOUTS = ("channels_last_3d", "ncdhw")
MODES = ("eager", "compile")
FAMILIES = ("space", "time")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_sizes", default="8,16,32", help="comma-separated batch sizes")
    p.add_argument("--steps", type=int, default=20, help="timed steps per batch size")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    p.add_argument("--layouts", default="channels_last_3d,ncdhw", help=f"any of {LAYOUTS}")
    p.add_argument("--modes", default="eager", help=f"any of {MODES}")
    p.add_argument(
        "--peak_tflops", type=float, default=989.0, help="peak dense TFLOP/s of the device"
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="tiny inputs (8 frames at 32², 1-s 40-mel audio, crops fitted to the 1×2×2 map) "
        "for CPU checks; the networks stay full size",
    )
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--time_budget_s", type=float, default=0.0, help="0: no budget")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument(
        "--profile_dir",
        default=None,
        help="after timing the first variant at --profile_batch, trace --profile_steps "
        "steps with torch.profiler into this directory and print a summary by kernel category",
    )
    p.add_argument("--profile_steps", type=int, default=3)
    p.add_argument(
        "--profile_batch", type=int, default=0, help="batch size to profile (0: the first)"
    )
    p.add_argument(
        "--flops_only", action="store_true", help="print the FLOP counts per clip and exit"
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b.strip()]
    args.layouts = [s.strip() for s in args.layouts.split(",") if s.strip()]
    args.modes = [s.strip() for s in args.modes.split(",") if s.strip()]
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error("--batch_sizes needs positive integers")
    if bad := [x for x in args.layouts if x not in LAYOUTS] + [
        x for x in args.modes if x not in MODES
    ]:
        p.error(f"unknown layout or mode {bad}; layouts {LAYOUTS}, modes {MODES}")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def load_config(tiny: bool) -> Any:
    """`configs/sota.py`; `tiny`: its full-size networks on tiny inputs (map `[1, 2, 2]`)."""
    from configs import sota

    config = sota.get_config()
    if tiny:
        c, i = config.crops, config.input
        c.space_large, c.space_small, c.time_large, c.time_small = 2, 1, 1, 1
        i.num_frames, i.crop_size, i.audio_seconds, i.num_mel_bins = 8, 32, 1.0, 40
    return config


# -- the model ----------------------------------------------------------------------------------


def spatial_crops(fmap: torch.Tensor, size: int, count: int) -> torch.Tensor:
    """`count` random `size×size` crops per sample of `[B, C, T, H, W]` → `[B·count, C, T, s, s]`.

    Offsets are uniform over all valid positions `0..H-size` (spec §5).
    """
    b, c, t, h, w = fmap.shape
    dev = fmap.device
    steps = torch.arange(size, device=dev)
    y = torch.randint(0, h - size + 1, (b, count, 1, 1), device=dev) + steps.view(1, 1, size, 1)
    x = torch.randint(0, w - size + 1, (b, count, 1, 1), device=dev) + steps.view(1, 1, 1, size)
    rows = torch.arange(b, device=dev).view(b, 1, 1, 1)
    crops = fmap.permute(0, 3, 4, 1, 2)[rows, y, x]  # [B, n, s, s, C, T]
    return crops.permute(0, 1, 4, 5, 2, 3).reshape(b * count, c, t, size, size)


def temporal_crops(fmap: torch.Tensor, length: int, count: int) -> torch.Tensor:
    """`count` random crops of `length` time steps per sample → `[B·count, C, length, H, W]`."""
    b, c, t, h, w = fmap.shape
    dev = fmap.device
    starts = torch.randint(0, t - length + 1, (b, count, 1), device=dev)
    steps = starts + torch.arange(length, device=dev).view(1, 1, length)
    rows = torch.arange(b, device=dev).view(b, 1, 1)
    crops = fmap.transpose(1, 2)[rows, steps]  # [B, n, l, C, H, W]
    return crops.transpose(2, 3).reshape(b * count, c, length, h, w)


def nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of `[B, D]` queries against detached `[B, D]` keys, positive i ↔ i, in float32."""
    logits = queries.float() @ keys.detach().float().t() / temperature
    return F.cross_entropy(logits, torch.arange(len(queries), device=queries.device))


class STiCATorch(nn.Module):
    """The STiCA pretraining model and loss, built from torchvision and `torch_modules`."""

    def __init__(self, config: Any):
        super().__init__()
        m, t = config.model, config.model.transformer
        width = m.video_widths[-1]
        self.video = video_backbone()
        self.audio = audio_backbone()
        self.pooling = TransformerPool(width, t.num_layers, t.num_heads, t.mlp_width, t.max_len)
        nn.init.normal_(self.pooling.pos_embedding, std=0.02)  # as ours (zeros in torch_modules)
        head = (width, m.head_hidden, m.embed_dim, m.head_dropout)
        self.video_head = ProjectionHead(*head)
        self.audio_head = ProjectionHead(*head)
        self.crops = {k: config.crops[k] for k in config.crops.keys() if k != "enabled"}
        self.loss = dict(config.loss)

    def embed_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """`[N, C, t, h, w]` → spatial mean → transformer pooling → head → `[N, E]`."""
        return self.video_head(self.pooling(fmap.mean(dim=(3, 4)).transpose(1, 2)))

    def embed_crops(self, crops: torch.Tensor, batch: int) -> list[torch.Tensor]:
        """`[B·n, C, t, h, w]` → n embeddings `[B, E]`, one per crop index."""
        z = self.embed_map(crops).view(batch, crops.shape[0] // batch, -1)
        return list(z.unbind(1))

    def forward(
        self, video1: torch.Tensor, video2: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """video `[B, 3, T, H, W]` ×2 (two views), audio `[B, 1, F, T_a]` → (loss, terms)."""
        b, c = video1.shape[0], self.crops
        maps = [video_map(self.video, v) for v in (video1, video2)]
        z_video = [self.embed_map(fm) for fm in maps]
        z_audio = self.audio_head(audio_map(self.audio, audio).mean(dim=(2, 3)))
        # crops[family][kind][view] = list of [B, E] (small crops of view 2 only).
        crops: dict[str, dict[str, list]] = {f: {"large": [], "small": []} for f in FAMILIES}
        for view, fm in enumerate(maps):
            for kind in ("large", "small"):
                if kind == "small" and view == 0:
                    continue
                for family, cut in (("space", spatial_crops), ("time", temporal_crops)):
                    n, size = c[f"n_{family}_{kind}"], c[f"{family}_{kind}"]
                    if n:
                        crops[family][kind].append(self.embed_crops(cut(fm, size, n), b))
        # The loss in float32 (autocast would run the similarity products in bf16).
        no_autocast = (
            torch.autocast(video1.device.type, enabled=False)
            if video1.device.type in ("cuda", "cpu")
            else contextlib.nullcontext()
        )
        with no_autocast:
            av_t, crop_t = self.loss["av_temperature"], self.loss["crop_temperature"]
            loss_av = torch.stack(
                [0.5 * (nce(z, z_audio, av_t) + nce(z_audio, z, av_t)) for z in z_video]
            ).mean()
            terms = []
            for family in FAMILIES:
                large, small = crops[family]["large"], crops[family]["small"]
                if not large:
                    continue
                v1_large, v2_large = large
                if len(v1_large) >= 2:  # official: one symmetric term on large crop index 1
                    terms.append(
                        0.5 * (nce(v2_large[1], v1_large[1], crop_t))
                        + 0.5 * nce(v1_large[1], v2_large[1], crop_t)
                    )
                for large_crop in v1_large:
                    for small_crop in small[0] if small else []:
                        terms.append(nce(small_crop, large_crop, crop_t))
            alpha = self.loss["cross_modal_weight"]
            loss_crops = torch.stack(terms).mean() if terms else torch.zeros_like(loss_av)
            loss = (1 - alpha) * loss_crops + alpha * loss_av if terms else loss_av
        return loss, {"loss_av": loss_av, "loss_crops": loss_crops, "crop_terms": len(terms)}


def synthetic_batch(config: Any, batch: int, device: str, layout: str, seed: int = 0) -> dict:
    """Random inputs like train_step.py's (per-sample offset and scale), torch layouts."""
    (_, t, s, _, _), (_, f, ta, _) = input_shapes(config.input, batch)
    g = torch.Generator().manual_seed(seed)

    def sample(shape):
        x = torch.randn(shape, generator=g)
        x *= torch.empty((shape[0],) + (1,) * (len(shape) - 1)).uniform_(0.5, 1.5, generator=g)
        x += torch.randn((shape[0], shape[1]) + (1,) * (len(shape) - 2), generator=g)
        return x.to(device)

    video_format = torch.channels_last_3d if layout == "channels_last_3d" else None
    audio_format = torch.channels_last if layout == "channels_last_3d" else None
    out = {
        "video1": sample((batch, 3, t, s, s)),
        "video2": sample((batch, 3, t, s, s)),
        "audio": sample((batch, 1, f, ta)),
    }
    for k, fmt in (("video1", video_format), ("video2", video_format), ("audio", audio_format)):
        if fmt is not None:
            out[k] = out[k].contiguous(memory_format=fmt)
    return out


def new_model(config: Any, device: str, layout: str) -> STiCATorch:
    model = STiCATorch(config).to(device)
    if layout == "channels_last_3d":
        model.video.to(memory_format=torch.channels_last_3d)
        model.audio.to(memory_format=torch.channels_last)
    return model.train()


# -- FLOPs ----------------------------------------------------------------------------------------


def count_flops(config: Any, batch: int) -> dict[str, int]:
    """FLOPs (2 × MACs) of one step's `forward` and `forward + backward`, on the meta device."""
    torch.manual_seed(0)
    with torch.device("meta"):
        model = STiCATorch(config).train()
        inputs = synthetic_batch_meta(config, batch)
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = model(**inputs)
    forward = counter.get_total_flops()
    with counter:  # a FlopCounterMode restarts its count on entry
        loss, _ = model(**inputs)
        loss.backward()
    return {"forward": forward, "train_step": counter.get_total_flops()}


def synthetic_batch_meta(config: Any, batch: int) -> dict[str, torch.Tensor]:
    (_, t, s, _, _), (_, f, ta, _) = input_shapes(config.input, batch)
    return {
        "video1": torch.empty(batch, 3, t, s, s),
        "video2": torch.empty(batch, 3, t, s, s),
        "audio": torch.empty(batch, 1, f, ta),
    }


# -- timing ------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def is_oom(error: BaseException) -> bool:
    return isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)) or (
        "out of memory" in str(error).lower()
    )


def make_step(model: STiCATorch, optimizer: torch.optim.Optimizer, args, mode: str):
    """`step(batch) → (loss, grad_norm)` as tensors (no host sync, like the JAX loop)."""
    forward = torch.compile(model) if mode == "compile" else model
    autocast = (
        torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16)
        if args.dtype == "bfloat16"
        else contextlib.nullcontext()
    )
    params = [p for p in model.parameters() if p.requires_grad]

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss, _ = forward(**batch)
        loss.backward()
        # The JAX step reports the gradient norm and checks it is finite; so does this one.
        grad_norm = torch.linalg.vector_norm(
            torch.stack(torch._foreach_norm([p.grad for p in params if p.grad is not None]))
        )
        optimizer.step()
        return loss.detach(), grad_norm

    return step


def run_batch_size(config, args, layout, mode, batch, flops, profile_dir=None) -> dict:
    """Fresh model and optimizer; first step (`compile_s`), warm-up, then the timed steps."""
    torch.manual_seed(args.seed)
    model = new_model(config, args.device, layout)
    # torch SGD: coupled weight decay then heavy-ball momentum, like ours (spec §8).
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)
    data = synthetic_batch(config, batch, args.device, layout, args.seed)
    step = make_step(model, optimizer, args, mode)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(args.device)
    start = time.perf_counter()
    metrics = [step(data)]
    _sync(args.device)
    compile_s = time.perf_counter() - start
    print(f"compiled: batch/device={batch} compile_s={compile_s:.1f} (first step)", flush=True)
    metrics += [step(data) for _ in range(args.warmup)]
    _sync(args.device)
    start = time.perf_counter()
    metrics += [step(data) for _ in range(args.steps)]
    _sync(args.device)
    seconds = time.perf_counter() - start
    if profile_dir:
        profile_steps(step, data, args, profile_dir)
    losses = [float(loss) for loss, _ in metrics]
    norms = [float(norm) for _, norm in metrics]
    step_s = seconds / args.steps
    peak = args.peak_tflops * 1e12
    mem = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
    result = {
        "framework": "torch",
        "variant": f"{mode}/{layout}",
        "batch_per_device": batch,
        "global_batch": batch,
        "devices": 1,
        "status": "ok",
        "steps": args.steps,
        "warmup": args.warmup,
        "compile_s": compile_s,
        "step_ms": 1e3 * step_s,
        "clips_per_s": batch / step_s,
        "flops_forward_per_device": flops["forward"],
        "flops_train_step_per_device": flops["train_step"],
        "tflops_per_s_per_device": flops["train_step"] / step_s / 1e12,
        "mfu": 3 * flops["forward"] / step_s / peak,
        "mfu_traced": flops["train_step"] / step_s / peak,
        "peak_memory_gib": mem,
        "loss_first": losses[0],
        "loss": losses[-1],
        "grad_norm": norms[-1],
        "finite": all(math.isfinite(v) for v in losses + norms),
    }
    del model, optimizer, data, step, metrics
    return result


def profile_steps(step, data, args, profile_dir: str) -> None:
    """torch.profiler trace of a few steps → Chrome trace + the kernel-category summary."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if args.device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    os.makedirs(profile_dir, exist_ok=True)
    with profile(activities=activities) as prof:
        for _ in range(args.profile_steps):
            step(data)
        _sync(args.device)
    path = os.path.join(profile_dir, "torch_trace.json")
    prof.export_chrome_trace(path)
    summary = profile_summary.summarize_trace(path, steps=args.profile_steps)
    print(profile_summary.format_summary(summary, title="torch.profiler"), flush=True)
    with open(os.path.join(profile_dir, "torch_profile_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


def format_result(r: dict[str, Any]) -> str:
    """The line train_step.py prints (GFLOP/step/device: counted forward + backward)."""
    head = f"batch/device={r['batch_per_device']}"
    if r["status"] != "ok":
        return f"{head} {r['status']}" + (f" ({r['error']})" if r.get("error") else "")
    mem = "" if r["peak_memory_gib"] is None else f" peak_mem_GiB={r['peak_memory_gib']:.1f}"
    return (
        f"{head} global_batch={r['global_batch']} clips/s={r['clips_per_s']:.2f} "
        f"step_ms={r['step_ms']:.2f} MFU={100 * r['mfu']:.3g}% "
        f"MFU_traced={100 * r['mfu_traced']:.3g}% "
        f"TFLOP/s/device={r['tflops_per_s_per_device']:.3g} "
        f"GFLOP/step/device={r['flops_train_step_per_device'] / 1e9:.4g} "
        f"compile_s={r['compile_s']:.1f} loss={r['loss']:.4f} grad_norm={r['grad_norm']:.4g} "
        f"finite={'yes' if r['finite'] else 'NO'}{mem}"
    )


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if not path:
        return
    atomic_file.write_text(path, json.dumps(data, indent=1))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs every variant × batch size; prints train_step.py's lines; returns the results."""
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.backends.cudnn.benchmark = True  # official main_stica.py
    config = load_config(args.tiny)
    name = "tiny" if args.tiny else "sota"
    device_kind = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    if args.flops_only:
        flops = count_flops(config, 2)
        out = {k: v / 2 for k, v in flops.items()}
        print(
            f"torch FLOPs per clip (batch 2): forward={out['forward'] / 1e9:.4f} GFLOP "
            f"forward+backward={out['train_step'] / 1e9:.4f} GFLOP",
            flush=True,
        )
        return {"ok": True, "flops_per_clip": out}
    video, audio = input_shapes(config.input, 1)
    print(
        f"torch_baseline: config={name} dtype={args.dtype} video={video[1:]} audio={audio[1:]} "
        f"devices=1x {device_kind} ({args.device}) torch={torch.__version__} "
        f"steps={args.steps} warmup={args.warmup} peak={args.peak_tflops:g} TFLOP/s/device "
        f"layouts={args.layouts} modes={args.modes}",
        flush=True,
    )
    header = {
        "framework": "torch",
        "config": name,
        "dtype": args.dtype,
        "device_kind": device_kind,
        "platform": args.device,
        "devices": 1,
        "torch": torch.__version__,
        "peak_tflops": args.peak_tflops,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    flops_by_batch: dict[int, dict[str, int]] = {}
    results, summaries, profile_dir = [], [], args.profile_dir
    for mode in args.modes:
        for layout in args.layouts:
            variant = f"{mode}/{layout}"
            print(f"variant={variant}", flush=True)
            stop, previous_s = None, 0.0
            for b in args.batch_sizes:
                start = time.perf_counter()
                elapsed = start - t_start
                if (
                    stop is None
                    and args.time_budget_s
                    and elapsed + 1.5 * previous_s > args.time_budget_s
                ):
                    stop = "skipped (time budget)"
                if stop is not None:
                    r = {"batch_per_device": b, "status": stop}
                else:
                    try:
                        if b not in flops_by_batch:
                            flops_by_batch[b] = count_flops(config, b)
                        here = profile_dir if args.profile_batch in (0, b) else None
                        r = run_batch_size(config, args, layout, mode, b, flops_by_batch[b], here)
                        profile_dir = None if here else profile_dir
                    except Exception as e:  # noqa: BLE001  (one size must not end the run)
                        if is_oom(e):
                            r = {
                                "batch_per_device": b,
                                "status": "OOM",
                                "error": error_line(e)[:300],
                            }
                            stop = "skipped (a smaller batch ran out of memory)"
                        else:
                            traceback.print_exc()
                            r = {
                                "batch_per_device": b,
                                "status": "ERROR",
                                "error": error_line(e)[:300],
                            }
                    gc.collect()
                    if args.device.startswith("cuda"):
                        torch.cuda.empty_cache()
                    previous_s = time.perf_counter() - start
                r.setdefault("variant", variant)
                r["wall_s"] = time.perf_counter() - start
                results.append(r)
                print(format_result(r), flush=True)
                write_json(args.json, dict(header, results=results, ok=None, summary=None))
            done = [r for r in results if r["variant"] == variant and r["status"] == "ok"]
            best = max(done, key=lambda r: r["clips_per_s"]) if done else None
            line = f"summary: framework=torch variant={variant} config={name} "
            if best:
                line += (
                    f"best clips/s={best['clips_per_s']:.2f} at "
                    f"batch/device={best['batch_per_device']} step_ms={best['step_ms']:.2f} "
                    f"MFU={100 * best['mfu']:.3g}% "
                )
            line += f"ran={[r['batch_per_device'] for r in done]}"
            summaries.append(line)
            print(line, flush=True)

    done = [r for r in results if r["status"] == "ok"]
    ok = (
        bool(done)
        and all(r["finite"] for r in done)
        and not any(r["status"] == "ERROR" for r in results)
    )
    best = max(done, key=lambda r: r["clips_per_s"]) if done else None
    summary = f"summary: framework=torch config={name} dtype={args.dtype} devices=1x {device_kind} "
    if best:
        summary += (
            f"best clips/s={best['clips_per_s']:.2f} variant={best['variant']} at "
            f"batch/device={best['batch_per_device']} step_ms={best['step_ms']:.2f} "
            f"MFU={100 * best['mfu']:.3g}% MFU_traced={100 * best['mfu_traced']:.3g}% "
        )
    else:
        summary += "no batch size ran "
    summary += f"total_s={time.perf_counter() - t_start:.1f} {'OK' if ok else 'FAILED'}"
    print(summary, flush=True)
    out = dict(header, results=results, ok=ok, summary=summary, variant_summaries=summaries)
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
