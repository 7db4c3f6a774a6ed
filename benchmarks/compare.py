"""Tables of one `gpu.sh` run: JAX vs PyTorch per batch size, the candidate fixes, compile times.

  python -m benchmarks.compare --jax=sota.json --torch=torch.json[,torch_compile.json]
      [--fixes=a.json,b.json]
      [--compile=farm.json,autotune.json,...] [--baseline_batch=16]

Reads the `--json` files of `train_step.py` and `torch_baseline.py` (and `--compile_only`
runs) and prints Markdown tables ready for `benchmarks/RESULTS.md`:
1. clips/s and MFU per batch size: JAX, every PyTorch variant, the best PyTorch variant at that
   batch size, and the ratio JAX / best PyTorch;
2. each candidate fix against the JAX baseline at `--baseline_batch`, and the step compiled
   with XLA's default autotuning against the baseline at `--autotune_batch`;
3. compile (or cache-load) seconds of every JAX run, with its XLA flags and cache.
Missing files or batch sizes print as "—"; the script never fails on a partial run.
"""

import argparse
import json
import os
import sys
from typing import Any


def _load(path: str) -> dict[str, Any] | None:
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _ok(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [r for r in (data or {}).get("results", []) if r.get("status") == "ok"]


def _cell(r: dict[str, Any] | None) -> str:
    if not r:
        return "—"
    return f"{r['clips_per_s']:.1f} ({100 * r['mfu']:.1f}%)"


def framework_table(jax_runs: list[dict], torch_run: dict | None) -> list[str]:
    """Rows per batch size: JAX, each torch variant, best torch, ratio."""
    jax_by_b = {}
    for data in jax_runs:
        for r in _ok(data):
            jax_by_b.setdefault(r["batch_per_device"], r)
    torch_rows = _ok(torch_run)
    variants = list(dict.fromkeys(r["variant"] for r in torch_rows))
    sizes = sorted(set(jax_by_b) | {r["batch_per_device"] for r in torch_rows})
    head = ["batch/device", "JAX clips/s (MFU)"] + [f"torch {v}" for v in variants]
    head += ["best torch", "JAX / best torch"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for b in sizes:
        j = jax_by_b.get(b)
        cells = {v: next((r for r in torch_rows if r["variant"] == v and r["batch_per_device"] == b), None) for v in variants}  # fmt: skip
        present = [r for r in cells.values() if r]
        best = max(present, key=lambda r: r["clips_per_s"]) if present else None
        ratio = f"{j['clips_per_s'] / best['clips_per_s']:.2f}×" if j and best else "—"
        row = [str(b), _cell(j)] + [_cell(cells[v]) for v in variants]
        row += [f"{_cell(best)} {best['variant']}" if best else "—", ratio]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def fixes_table(baseline: dict | None, fixes: list[dict], batch: int) -> list[str]:
    """Each candidate fix at `batch` against the baseline: clips/s, change, compile_s."""

    def at(data):
        return next((r for r in _ok(data) if r["batch_per_device"] == batch), None)

    base = at(baseline)
    lines = [
        "| variant | options | clips/s (MFU) | vs baseline | step ms | compile s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for data in [baseline] + fixes:
        if not data:
            continue
        r = at(data)
        change = f"{r['clips_per_s'] / base['clips_per_s'] - 1:+.1%}" if r and base else "—"
        defaults = (False, 0, "global", "float32")
        options = (
            ", ".join(
                f"{k}={v}" for k, v in (data.get("options") or {}).items() if v not in defaults
            )
            or "(none)"
        )
        lines.append(
            f"| {data.get('variant', '?')} | {options} | {_cell(r)} | {change} | "
            f"{r['step_ms']:.1f} | {r['compile_s']:.1f} |"
            if r
            else f"| {data.get('variant', '?')} | {options} | — | — | — | — |"
        )
    return lines


def profile_table(profiles: list[tuple[str, dict | None]]) -> list[str]:
    """Device time per kernel category of each profile summary (`profile_summary.py`)."""
    present = [(n, p) for n, p in profiles if p]
    if not present:
        return ["(no profile summaries)"]
    head = ["category"] + [f"{n} ms/step (share)" for n, _ in present]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for c in next(iter(present))[1]["categories"]:
        cells = [
            f"{p['categories'][c]['ms_per_step']:.2f} ({100 * p['categories'][c]['share']:.1f}%)"
            for _, p in present
        ]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    totals = [f"{p['total_ms_per_step']:.2f}" for _, p in present]
    lines.append("| total | " + " | ".join(totals) + " |")
    return lines


def compile_table(runs: list[tuple[str, dict | None]]) -> list[str]:
    """compile_s of every JAX run (compile-only farm, timing processes, autotuned runs)."""
    lines = [
        "| run | XLA_FLAGS | cache | batch/device | compile (or cache load) s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, data in runs:
        if not data:
            lines.append(f"| {name} | — | — | — | not run |")
            continue
        flags = data.get("xla_flags") or "(default)"
        cache = "yes" if data.get("compilation_cache_dir") else "no"
        for r in data.get("results", []):
            value = f"{r['compile_s']:.1f}" if "compile_s" in r else r.get("status", "?")
            lines.append(f"| {name} | {flags} | {cache} | {r['batch_per_device']} | {value} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jax", default="", help="train_step.py JSON(s) of the baseline, commas")
    p.add_argument("--torch", default="", help="torch_baseline.py JSON(s), commas (merged)")
    p.add_argument("--fixes", default="", help="train_step.py JSONs of the candidate fixes")
    p.add_argument("--compile", default="", help="JSONs whose compile times to list")
    p.add_argument("--baseline_batch", type=int, default=16)
    p.add_argument("--profiles", default="", help="NAME=profile summary JSON, commas")
    p.add_argument("--autotune", default="", help="train_step.py JSONs with XLA's autotuning")
    p.add_argument("--autotune_batch", type=int, default=8)
    args = p.parse_args(argv)

    def many(s):
        return [x for x in s.split(",") if x]

    jax_runs = [d for d in map(_load, many(args.jax)) if d]
    print("## JAX vs PyTorch, clips/s per device (MFU)\n")
    torch_runs = [d for d in map(_load, many(args.torch)) if d]
    merged = {"results": [r for d in torch_runs for r in d.get("results", [])]}
    print("\n".join(framework_table(jax_runs, merged if torch_runs else None)))
    fixes = [d for d in map(_load, many(args.fixes)) if d]
    if fixes:
        print(f"\n## Candidate fixes at batch/device={args.baseline_batch}\n")
        print("\n".join(fixes_table(jax_runs[0] if jax_runs else None, fixes, args.baseline_batch)))
    autotuned = [d for d in map(_load, many(args.autotune)) if d]
    if autotuned:
        print(
            f"\n## XLA's default autotuning vs the fast flags at batch/device={args.autotune_batch}\n"
        )
        table = fixes_table(jax_runs[0] if jax_runs else None, autotuned, args.autotune_batch)
        print("\n".join(table))
    if args.profiles:
        named = [x.partition("=")[::2] for x in many(args.profiles)]
        print("\n## Device time by kernel category\n")
        print("\n".join(profile_table([(n, _load(path)) for n, path in named])))
    if args.compile:
        print("\n## Compile times\n")
        print(
            "\n".join(compile_table([(os.path.basename(x), _load(x)) for x in many(args.compile)]))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
