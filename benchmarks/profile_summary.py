"""Device time of a profiled train step by kernel category, from a Chrome-format trace.

  python -m benchmarks.profile_summary TRACE [--steps=N] [--hlo=OPTIMISED_HLO.txt]

Reads the trace `jax.profiler.trace(..., create_perfetto_trace=True)` writes
(`perfetto_trace.json.gz`) or `torch.profiler`'s `export_chrome_trace` (`.json`), picks the
device's kernels (torch: events of category `kernel`, `gpu_memcpy`, `gpu_memset`; JAX: the
events of a `/device:GPU` process, or on a CPU the XLA operations of the `tf_XLA*` threads),
and sums their time per category:

  convolution     cuDNN / CUTLASS / XLA convolution kernels (fprop, dgrad, wgrad)
  gemm            matrix products: cuBLAS (`nvjet`, `gemm`), Triton GEMM fusions, attention
  reduction/bn    BatchNorm statistics and backward, LayerNorm, softmax, other reductions
  elementwise     XLA loop fusions, PyTorch elementwise kernels, Triton pointwise kernels
  copy/transpose  copies, transposes, layout changes, concatenation, slices, memcpy / memset
  collective      NCCL and XLA collectives (all-reduce, all-gather, ...)
  other           anything else

Kernel names decide (`categorize`); for an XLA operation whose name says nothing (`fusion.12`,
`ynn_fusion.3`), the category of that instruction in the optimised HLO (`hlo.categories`)
does, when `--hlo` (or `hlo_categories=`) gives it.
"""

import argparse
import collections
import gzip
import json
import re
import sys
from typing import Any

from stica_jax import hlo

CATEGORIES = (
    "convolution",
    "gemm",
    "reduction/bn",
    "elementwise",
    "copy/transpose",
    "collective",
    "other",
)

# Ordered: the first match wins. Names are lower-cased first.
_RULES = (
    (
        "collective",
        r"nccl|all-?reduce|allreduce|all-?gather|allgather|reduce-?scatter|"
        r"collective-?permute|all-?to-?all|sendrecv",
    ),
    # BatchNorm kernels of cuDNN (`cudnn::bn_fw_tr_1C11_kernel`) before the cuDNN catch-all.
    (
        "reduction/bn",
        r"batch_?norm|cudnn::bn|bn_fw|bn_bw|welford|layer_?norm|softmax|cross_entropy|"
        r"nll_loss|reduce_kernel|reduction|^input_reduce|triton_red_|triton_per_",
    ),
    (
        "copy/transpose",
        r"memcpy|memset|transpose|^copy|copy_fusion|nchwtonhwc|nhwctonchw|catarray|concatenate|"
        r"dynamic[-_]update[-_]slice|dynamic[-_]slice|^slice|^wrapped_slice|gather|scatter|"
        r"index_put|indexing_backward|^pad|_pad_|layout",
    ),
    (
        "convolution",
        r"conv(?!ert)|fprop|dgrad|wgrad|implicit_gemm|implicit_convolve|winograd|im2col|"
        r"col2im|depthwise|cudnn",
    ),
    (
        "gemm",
        r"gemm|nvjet|cublas|cutlass|matmul|(^|[^a-z])dot([^a-z]|$)|xmma|s16816|s1688|h16816|"
        r"bmm|flash|fmha|attention|triton_tem_",
    ),
    # XLA's reduction fusions are "input_*_fusion"; max-pool is a reduce-window.
    ("reduction/bn", r"^input_|reduce|mean|sum_|norm"),
    (
        "elementwise",
        r"elementwise|vectorized|unrolled|^loop_|fusion|triton_poi_|relu|gelu|add|mul|sub|div|"
        r"exp|log|sqrt|tanh|sigmoid|clamp|threshold|fill|where|select|convert|broadcast|"
        r"maximum|minimum|compare|negate|sgd|momentum|foreach|dropout|bernoulli|rng|random",
    ),
)
_COMPILED = tuple((c, re.compile(r)) for c, r in _RULES)
# XLA operations that say nothing about their work: decided by the HLO when it is given.
_GENERIC_XLA = re.compile(r"^(ynn_|xnn_|onednn_)?fusion(\.\d+)?$|^(custom-call|call)(\.\d+)?$")


def categorize(name: str, hlo_categories: dict[str, str] | None = None) -> str:
    """The category of one kernel or XLA operation (see the module docstring)."""
    key = name.strip()
    if hlo_categories and key in hlo_categories and _GENERIC_XLA.match(key.lower()):
        return hlo_categories[key]
    lower = key.lower()
    for category, regex in _COMPILED:
        if regex.search(lower):
            return category
    if hlo_categories and key in hlo_categories:
        return hlo_categories[key]
    return "other"


def load_events(path: str) -> list[dict[str, Any]]:
    """The `traceEvents` of a Chrome-format trace (`.json` or `.json.gz`)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def device_kernels(events: list[dict[str, Any]]) -> tuple[str, list[tuple[str, float, str]]]:
    """(`source`, [(name, microseconds, HLO op or "")]) of the device's kernels in a trace.

    torch.profiler: complete events of category kernel / gpu_memcpy / gpu_memset. JAX on a GPU:
    the events of the `/device:GPU:*` process's streams (the derived "XLA Modules" / "XLA Ops"
    / "Steps" lines only when no stream has events, so nothing counts twice); their `hlo_op`
    argument, where present, names the HLO instruction. JAX on a CPU: the XLA operations of
    the `tf_XLA*` threads (without the profiler's bookkeeping and "end:" markers).
    """
    complete = [e for e in events if e.get("ph") == "X" and "dur" in e]
    torch_cats = ("kernel", "gpu_memcpy", "gpu_memset")
    kernels = [(e["name"], float(e["dur"]), "") for e in complete if e.get("cat") in torch_cats]
    if kernels:
        return "torch-gpu", kernels
    names, threads = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            names[e.get("pid")] = str(e.get("args", {}).get("name", ""))
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e.get("pid"), e.get("tid"))] = str(e.get("args", {}).get("name", ""))

    def thread(e):
        return threads.get((e.get("pid"), e.get("tid")), "")

    def hlo_op(e):
        args = e.get("args") or {}
        return str(args.get("hlo_op") or args.get("long_name") or "").split(" ")[0].lstrip("%")

    gpu_pids = {pid for pid, n in names.items() if re.search(r"/device:(GPU|TPU)", n)}
    if gpu_pids:
        on_device = [e for e in complete if e.get("pid") in gpu_pids]
        derived = re.compile(
            r"XLA Modules|XLA Ops|Steps|TraceMe|Framework|Source|Launch Stats|TensorFlow|Name Scope"
        )
        streams = [e for e in on_device if not derived.search(thread(e))]
        if not streams:
            streams = [e for e in on_device if thread(e) == "XLA Ops"]
        return "jax-gpu", [(e["name"], float(e["dur"]), hlo_op(e)) for e in streams]
    cpu = []
    for e in complete:
        name = str(e["name"])
        if not thread(e).startswith("tf_XLA") or name.startswith("end: "):
            continue
        if "::" in name or name.startswith("$"):  # ThreadpoolListener::..., ThunkExecutor::...
            continue
        cpu.append((name, float(e["dur"]), name))
    return "jax-cpu", cpu


def summarize_kernels(
    kernels: list[tuple[str, float, str]],
    *,
    steps: int = 1,
    hlo_categories: dict[str, str] | None = None,
    source: str = "",
) -> dict[str, Any]:
    """Time (ms per step), share and kernel count per category, and the top kernels."""
    per_cat = collections.defaultdict(lambda: [0.0, 0])
    per_name = collections.defaultdict(lambda: [0.0, 0, ""])
    for name, us, op in kernels:
        cat = categorize(name, hlo_categories)
        if cat == "other" and op and hlo_categories:
            cat = hlo_categories.get(op, "other")
        per_cat[cat][0] += us
        per_cat[cat][1] += 1
        per_name[name][0] += us
        per_name[name][1] += 1
        per_name[name][2] = cat
    total = sum(v[0] for v in per_cat.values())
    steps = max(steps, 1)
    return {
        "source": source,
        "steps": steps,
        "total_ms_per_step": total / 1e3 / steps,
        "categories": {
            c: {
                "ms_per_step": per_cat[c][0] / 1e3 / steps,
                "share": per_cat[c][0] / total if total else 0.0,
                "kernels_per_step": per_cat[c][1] / steps,
            }
            for c in CATEGORIES
        },
        "top": [
            {"name": n[:120], "category": v[2], "ms_per_step": v[0] / 1e3 / steps, "count": v[1]}
            for n, v in sorted(per_name.items(), key=lambda kv: -kv[1][0])[:15]
        ],
    }


def summarize_trace(
    path: str, *, steps: int = 1, hlo_categories: dict[str, str] | None = None
) -> dict[str, Any]:
    """`summarize_kernels` of the device kernels of the trace at `path`."""
    source, kernels = device_kernels(load_events(path))
    return summarize_kernels(kernels, steps=steps, hlo_categories=hlo_categories, source=source)


def format_summary(summary: dict[str, Any], title: str = "profile") -> str:
    """A small table: category, ms per step, share, kernels per step; then the top kernels."""
    lines = [
        f"{title} ({summary['source']}): {summary['total_ms_per_step']:.2f} ms of device "
        f"kernels per step, over {summary['steps']} steps",
        f"  {'category':<16}{'ms/step':>10}{'share':>8}{'kernels/step':>14}",
    ]
    for c, v in summary["categories"].items():
        lines.append(
            f"  {c:<16}{v['ms_per_step']:>10.2f}{100 * v['share']:>7.1f}%"
            f"{v['kernels_per_step']:>14.1f}"
        )
    if not summary["top"]:
        lines.append("  (no device kernels in this trace: a CPU run of PyTorch has none)")
        return "\n".join(lines)
    lines.append("  top kernels (ms/step, category):")
    for t in summary["top"][:8]:
        lines.append(f"    {t['ms_per_step']:8.2f}  {t['category']:<15} {t['name']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trace")
    p.add_argument("--steps", type=int, default=1, help="steps the trace holds")
    p.add_argument("--hlo", default=None, help="optimised HLO text (.txt or .txt.gz)")
    args = p.parse_args(argv)
    categories = None
    if args.hlo:
        opener = gzip.open if args.hlo.endswith(".gz") else open
        with opener(args.hlo, "rt") as f:
            categories = hlo.categories(f.read())
    summary = summarize_trace(args.trace, steps=args.steps, hlo_categories=categories)
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
