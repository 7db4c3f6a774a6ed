"""What the compiled train step is made of: fusions, convolutions, copies and collectives.

  python -m benchmarks.hlo_stats [--cpu_devices=8] [--batch=1] [--tiny] [--bn_one_pass]
      [--bn_sync=global|device] [--conv_channel_multiple=0] [--json=PATH] [--hlo_out=PATH]

Lowers and compiles the step `train_step.py` times (`measured_step.lower_step`: the SOTA config
by default) on N fake CPU devices (`--cpu_devices`, or the real devices with `--cpu_devices=0`),
and counts in the optimised HLO (`compiled.as_text()`) and, for the collectives, also in the HLO
before optimisation (`lowered.as_text("hlo")`, the program JAX hands to XLA on every backend):
- fusions (by kind), convolutions (plain, cuDNN custom calls, or inside fusions), dots,
  copies and transposes of the entry computation and the computations it calls;
- all-reduces / all-gathers / other collectives: count, bytes per step, and how many
  move at most 4 KiB (latency-bound: BatchNorm statistics, BatchNorm parameter gradients).

`python -m benchmarks.train_step --hlo_stats` prints the same counts for the program it times
(on a GPU, the XLA:GPU optimised program).
"""

import argparse
import json
import time
from typing import Any

from stica_jax.hlo import format_stats, stats


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu_devices", type=int, default=8, help="fake CPU devices (0: real ones)")
    p.add_argument("--batch", type=int, default=1, help="clips per device")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--bn_one_pass", action="store_true")
    p.add_argument("--bn_sync", default="global", choices=("global", "device"))
    p.add_argument("--conv_channel_multiple", type=int, default=0)
    p.add_argument("--sum_grads_once", action="store_true")
    p.add_argument("--no_compile", action="store_true", help="only the unoptimised counts")
    p.add_argument("--json", default=None)
    p.add_argument("--hlo_out", default=None, help="write the optimised HLO text here")
    args = p.parse_args(argv)

    import jax

    if args.cpu_devices:
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    # Late: counting a given HLO text (`profile_summary.py --hlo`) needs neither JAX nor the model.
    from benchmarks import measured_step
    from stica_jax import step

    mesh = step.make_mesh()
    config = measured_step.load_config(args.tiny)
    options = measured_step.ModelOptions(
        bn_one_pass=args.bn_one_pass,
        bn_sync=args.bn_sync,
        conv_channel_multiple=args.conv_channel_multiple,
        sum_grads_once=args.sum_grads_once,
    )
    lowered = measured_step.lower_step(config, mesh, args.batch, options)
    out: dict[str, Any] = {
        "devices": mesh.size,
        "platform": jax.devices()[0].platform,
        "batch_per_device": args.batch,
        "config": "tiny" if args.tiny else "sota",
        "options": options.asdict(),
    }
    out["unoptimised"] = stats(lowered.as_text(dialect="hlo"))
    print(format_stats(out["unoptimised"], f"unoptimised HLO ({mesh.size} devices)"), flush=True)
    if not args.no_compile:
        start = time.perf_counter()
        compiled = lowered.compile()
        out["compile_s"] = time.perf_counter() - start
        text = compiled.as_text()
        out["optimised"] = stats(text)
        print(
            format_stats(
                out["optimised"],
                f"optimised HLO ({out['platform']}, {mesh.size} devices, "
                f"compile {out['compile_s']:.0f} s)",
            ),
            flush=True,
        )
        if args.hlo_out:
            with open(args.hlo_out, "w") as f:
                f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
