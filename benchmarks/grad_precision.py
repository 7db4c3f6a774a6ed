"""How precise one step's summed gradient is: the default sums against one float32 sum per
gradient, both measured against a float64 single-device reference.

  python -m benchmarks.grad_precision [--devices=8] [--dtype=bfloat16] [--batch=16]

The tiny test network (`tests/tiny.py`, the SOTA structure with a few channels) on N fake CPU
devices, in the compute dtype `--dtype` (parameters stay float32), one global batch:

- `default`: JAX's transpose of the replicated parameters sums each weight's gradient where
  the weight is used, in the compute dtype (the pooling and heads run once per view and crop
  family, so their gradients are summed several times);
- `sum_grads_once` (`config.performance.sum_grads_once`): one float32 `psum` per parameter.

For each top-level module it prints the max and median over its parameters of
‖g − g64‖ / ‖g64‖, with g64 the float64 gradient on one device, and for each way the bytes the
compiled program's all-reduces move per step (`stica_jax.hlo`).
"""

import argparse
import collections
import os

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--batch", type=int, default=16, help="global batch")
    args = p.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_num_cpu_devices", args.devices)
    from stica_jax import hlo, step
    from tests.tiny import random_batch, split_in, tiny_config, tiny_model

    def run(dtype, devices, sum_grads_once=False):
        config = tiny_config(dtype)
        wide = jnp.float64 if dtype == "float64" else jnp.float32
        graphdef, params, stats, batch = split_in(
            tiny_model(config, axis_name=step.MESH_AXIS), random_batch(config, args.batch), wide
        )
        grad_fn = step.make_grad_fn(
            graphdef,
            step.LossConfig.from_config(config.loss),
            step.make_mesh(jax.devices()[:devices]),
            sum_grads_once=sum_grads_once,
        )
        key = jax.random.key(0)
        text = grad_fn.lower(params, stats, batch, key).compile().as_text()
        grads = jax.device_get(grad_fn(params, stats, batch, key)[2])
        reduce = hlo.stats(text)["collectives"].get("all-reduce", {"bytes": 0, "count": 0})
        return grads, reduce

    with jax.enable_x64(True):
        reference, _ = run("float64", 1)
    out = {}
    for name, once in (("default", False), ("sum_grads_once", True)):
        grads, reduce = run(args.dtype, args.devices, once)
        groups = collections.defaultdict(list)
        for (path, g64), (_, g) in zip(
            jax.tree_util.tree_leaves_with_path(reference),
            jax.tree_util.tree_leaves_with_path(grads),
        ):
            g64 = np.asarray(g64, np.float64)
            norm = np.linalg.norm(g64)
            if norm == 0:
                continue
            group = str(getattr(path[0], "key", path[0]))
            groups[group].append(float(np.linalg.norm(np.asarray(g, np.float64) - g64) / norm))
        out[name] = {
            "all_reduce_bytes": reduce["bytes"],
            "all_reduces": reduce["count"],
            "groups": {
                g: {"max": max(e), "median": float(np.median(e)), "leaves": len(e)}
                for g, e in sorted(groups.items())
            },
        }
        print(
            f"{name}: {reduce['count']} all-reduces, {reduce['bytes']} bytes per step "
            f"({args.devices} devices, compute {args.dtype})"
        )
        for g, e in out[name]["groups"].items():
            print(f"  {g:24s} max {e['max']:.2e}  median {e['median']:.2e}  ({e['leaves']})")
    return out


if __name__ == "__main__":
    main()
