"""What a compiled XLA program is made of: executed instructions by category, fusions,
convolutions, copies, and its collectives (count, bytes, how many are latency-bound).

Reads HLO text (`compiled.as_text()`, or `lowered.as_text("hlo")` before optimisation) on any
backend: the CPU programs the benchmarks time, the GPU ones, and the TPU programs
`stica_jax.compile_check` compiles for a slice without one. Needs no JAX.
"""

import collections
import math
import re
from typing import Any

_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "f8e4m3fn": 1,
    "f8e5m2": 1,
    "s16": 2,
    "u16": 2,
    "f16": 2,
    "bf16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
    "c64": 8,
    "c128": 16,
}
_ARRAY = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([\d,]*)\]")
_COMPUTATION = re.compile(r"^\s*(ENTRY\s+)?%?([\w.\-]+)\s*(\(.*\)\s*->.*)?\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
COLLECTIVES = (
    "all-reduce",
    "all-gather",
    "reduce-scatter",
    "all-to-all",
    "collective-permute",
    "collective-broadcast",
)
SMALL_BYTES = 4096


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape string (an array or a tuple of arrays)."""
    return sum(
        _BYTES[dt] * math.prod(int(d) for d in dims.split(",") if d)
        for dt, dims in _ARRAY.findall(shape)
    )


def _split_shape_opcode(rhs: str) -> tuple[str, str, str]:
    """`f32[2]{0} add(...), attrs` → (shape, opcode, rest after the opening parenthesis)."""
    rhs = rhs.strip()
    if rhs.startswith("("):  # tuple shape: up to the matching parenthesis
        depth = 0
        for i, ch in enumerate(rhs):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                break
        shape, rest = rhs[: i + 1], rhs[i + 1 :].strip()
    else:
        shape, _, rest = rhs.partition(" ")
    opcode, _, rest = rest.partition("(")
    return shape, opcode.strip(), rest


def parse_hlo(text: str) -> dict[str, list[dict[str, str]]]:
    """`{computation: [{name, shape, opcode, rest}]}`; the entry computation is `"ENTRY"` too."""
    comps: dict[str, list[dict[str, str]]] = {}
    current = None
    for line in text.splitlines():
        m = _COMPUTATION.match(line)
        if m and " = " not in line:
            current = m.group(2)
            comps[current] = []
            if m.group(1):
                comps["ENTRY"] = comps[current]
            continue
        if current is None:
            continue
        m = _INSTRUCTION.match(line)
        if m:
            shape, opcode, rest = _split_shape_opcode(m.group(3))
            comps[current].append(dict(name=m.group(2), shape=shape, opcode=opcode, rest=rest))
    return comps


def _called(rest: str) -> list[str]:
    names = re.findall(r"(?:calls|to_apply|body|condition|branch_computations)=\{?([^,}\s]+)", rest)
    names += re.findall(r"(?:calls|branch_computations)=\{([^}]*)\}", rest)
    out = []
    for n in names:
        out += [x.strip().lstrip("%") for x in n.split(",") if x.strip()]
    return out


def _fused_category(comps, name: str, seen=None) -> str:
    """Category of a fused computation from the operations inside it."""
    seen = seen or set()
    ops = set()
    for inst in comps.get(name, []):
        ops.add(inst["opcode"])
        if inst["opcode"] in ("fusion", "call") and name not in seen:
            for c in _called(inst["rest"]):
                ops.add(_fused_category(comps, c, seen | {name}))
        if inst["opcode"] == "custom-call":
            ops.add(_custom_call_category(inst["rest"]))
    if "convolution" in ops:
        return "convolution"
    if ops & {"dot", "gemm"}:
        return "gemm"
    if ops & {"reduce", "reduce-window", "reduction/bn"}:
        return "reduction/bn"
    if ops and ops <= {"parameter", "copy", "transpose", "bitcast", "reshape", "tuple",
                       "get-tuple-element", "copy/transpose", "slice", "dynamic-slice",
                       "dynamic-update-slice", "concatenate", "pad", "constant"}:  # fmt: skip
        return "copy/transpose"
    return "elementwise"


def _custom_call_category(rest: str) -> str:
    target = re.search(r'custom_call_target="([^"]+)"', rest)
    t = target.group(1).lower() if target else ""
    if "conv" in t:
        return "convolution"
    if any(k in t for k in ("gemm", "matmul", "cublas", "dot")):
        return "gemm"
    if "norm" in t or "reduce" in t:
        return "reduction/bn"
    return "other"


def _category(comps, inst: dict[str, str]) -> str:
    op = inst["opcode"]
    base = op.removesuffix("-start").removesuffix("-done")
    if base in COLLECTIVES:
        return "collective"
    if op == "fusion":
        kind = re.search(r"kind=(\w+)", inst["rest"])
        called = _called(inst["rest"])
        cat = _fused_category(comps, called[0]) if called else "elementwise"
        if kind and kind.group(1) == "kCustom" and cat == "elementwise":
            return "other"
        return cat
    if op == "custom-call":
        return _custom_call_category(inst["rest"])
    if op == "convolution":
        return "convolution"
    if op == "dot":
        return "gemm"
    if op in ("reduce", "reduce-window", "select-and-scatter"):
        return "reduction/bn"
    if op in ("copy", "transpose", "copy-start", "copy-done", "concatenate", "dynamic-slice",
              "dynamic-update-slice", "slice", "pad", "gather", "scatter"):  # fmt: skip
        return "copy/transpose"
    return "elementwise"


def _top_level(comps) -> list[str]:
    """The entry computation and every computation reachable from it except fused ones."""
    if "ENTRY" not in comps:
        return []
    entry = next(k for k, v in comps.items() if v is comps["ENTRY"] and k != "ENTRY")
    order, todo = [], [entry]
    while todo:
        c = todo.pop()
        if c in order or c not in comps:
            continue
        order.append(c)
        for inst in comps[c]:
            # Only control flow runs a computation as such; fused bodies and the reducers of
            # reduce / all-reduce / scatter are parts of one kernel.
            if inst["opcode"] not in ("while", "conditional", "call", "async-start"):
                continue
            todo += _called(inst["rest"])
    return order


_FREE = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all"}


def categories(text: str) -> dict[str, str]:
    """`{instruction name: category}` of the executed (top-level) instructions of HLO text."""
    comps = parse_hlo(text)
    return {
        inst["name"]: _category(comps, inst)
        for c in _top_level(comps)
        for inst in comps[c]
        if inst["opcode"] not in _FREE
    }


def stats(text: str) -> dict[str, Any]:
    """Counts of the executed instructions and of the collectives (with bytes) of HLO text."""
    comps = parse_hlo(text)
    top = [inst for c in _top_level(comps) for inst in comps[c]]
    kinds = collections.Counter(
        re.search(r"kind=(\w+)", i["rest"]).group(1)
        for i in top
        if i["opcode"] == "fusion" and re.search(r"kind=(\w+)", i["rest"])
    )
    cats = collections.Counter(_category(comps, i) for i in top if i["opcode"] not in _FREE)
    coll: dict[str, dict[str, Any]] = {}
    for i in top:
        op = i["opcode"]
        if op.endswith("-done"):
            continue  # an async collective counts once, at its start
        base = op.removesuffix("-start")
        if base not in COLLECTIVES:
            continue
        shape = i["shape"]
        if op.endswith("-start") and shape.startswith("("):
            # all-reduce-start returns the results; all-gather-start returns (inputs, outputs).
            inner = shape[1:-1]
            shape = inner if base == "all-reduce" else shape
        b = shape_bytes(shape) if base == "all-reduce" else _output_bytes(i, base)
        c = coll.setdefault(base, {"count": 0, "bytes": 0, "small": 0, "sizes": []})
        c["count"] += 1
        c["bytes"] += b
        c["small"] += b <= SMALL_BYTES
        c["sizes"].append(b)
    for c in coll.values():
        sizes = sorted(c.pop("sizes"))
        c["median_bytes"] = sizes[len(sizes) // 2] if sizes else 0
        c["max_bytes"] = sizes[-1] if sizes else 0
    convs = sum(1 for i in top if _category(comps, i) == "convolution")
    return {
        "instructions": sum(1 for i in top if i["opcode"] not in _FREE),
        "fusions": sum(1 for i in top if i["opcode"] == "fusion"),
        "fusion_kinds": dict(kinds),
        "convolutions": convs,
        "copies": sum(1 for i in top if i["opcode"] in ("copy", "copy-start")),
        "transposes": sum(1 for i in top if i["opcode"] == "transpose"),
        "categories": dict(cats),
        "collectives": coll,
    }


def _output_bytes(inst: dict[str, str], base: str) -> int:
    shape = inst["shape"]
    if shape.startswith("(") and inst["opcode"].endswith("-start"):
        # (operands..., results...): the second half is what arrives.
        arrays = _ARRAY.findall(shape)
        half = arrays[len(arrays) // 2 :]
        return sum(
            _BYTES[dt] * math.prod(int(d) for d in dims.split(",") if d) for dt, dims in half
        )
    return shape_bytes(shape)


def format_stats(s: dict[str, Any], title: str) -> str:
    """One line of counts, then one line per collective kind."""
    kinds = " ".join(f"{k}={v}" for k, v in sorted(s["fusion_kinds"].items()))
    lines = [
        f"{title}: instructions={s['instructions']} fusions={s['fusions']} ({kinds}) "
        f"convolutions={s['convolutions']} copies={s['copies']} transposes={s['transposes']}"
    ]
    for name, c in sorted(s["collectives"].items()):
        lines.append(
            f"  {name}: count={c['count']} bytes/step={c['bytes']} "
            f"(<= {SMALL_BYTES} B: {c['small']}) median_bytes={c['median_bytes']} "
            f"max_bytes={c['max_bytes']}"
        )
    return "\n".join(lines)


def small_collective_estimate(count: int, latency_us: float) -> float:
    """Milliseconds per step if `count` latency-bound collectives run one after another."""
    return count * latency_us / 1e3
