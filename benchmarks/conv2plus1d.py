"""Forward + backward time of R(2+1)D's factorised convolutions: 3-D kernels vs the 2-D fold.

`stica_jax.models.layers.Conv` runs a space-only `(1, kh, kw)` kernel as a 2-D convolution
over `[B·T, H, W]` and a time-only `(kt, 1, 1)` kernel as one over `[B, T, H·W]`. This script
times both forms (jitted gradient of a sum of squares, best of `--repeats`) on the demo's and
the SOTA network's shapes and prints one line per case and the speed-up:

  python -m benchmarks.conv2plus1d            # the default device (CPU here; a GPU if present)
  python -m benchmarks.conv2plus1d --sota     # add full-size SOTA layer shapes
"""

import argparse
import time

import jax
import jax.numpy as jnp


def conv3d(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(
        x, kernel, strides, [(p, p) for p in padding], dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
    )


def folded(x, kernel, strides, padding):
    """The same convolution through `stica_jax`'s Conv (2-D fold)."""
    from flax import nnx

    from stica_jax.models.layers import Conv

    module = Conv(
        kernel.shape[3],
        kernel.shape[4],
        kernel.shape[:3],
        strides,
        padding,
        dtype=x.dtype,
        rngs=nnx.Rngs(0),
    )
    module.kernel.set_value(kernel)
    return module(x)


def seconds(fn, x, kernel, repeats):
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(fn(x, k) ** 2), argnums=(0, 1)))
    jax.block_until_ready(grad(x, kernel))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(grad(x, kernel))
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sota", action="store_true", help="also full-size SOTA shapes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # (name, x shape [B, T, H, W, C], kernel (kt, kh, kw), out channels, strides, padding)
    cases = [
        ("demo stem spatial", (32, 16, 32, 32, 3), (1, 7, 7), 6, (1, 2, 2), (0, 3, 3)),
        ("demo layer1 spatial", (32, 16, 16, 16, 8), (1, 3, 3), 8, (1, 1, 1), (0, 1, 1)),
        ("demo layer1 temporal", (32, 16, 16, 16, 8), (3, 1, 1), 8, (1, 1, 1), (1, 0, 0)),
        ("demo layer2 temporal s2", (32, 16, 8, 8, 20), (3, 1, 1), 16, (2, 1, 1), (1, 0, 0)),
    ]
    if args.sota:
        cases += [
            ("sota layer1 spatial", (8, 60, 56, 56, 64), (1, 3, 3), 144, (1, 1, 1), (0, 1, 1)),
            ("sota layer1 temporal", (8, 60, 56, 56, 144), (3, 1, 1), 64, (1, 1, 1), (1, 0, 0)),
        ]
    print(f"device: {jax.devices()[0].device_kind}")
    for name, shape, size, out, strides, padding in cases:
        x = jax.random.normal(jax.random.key(0), shape)
        kernel = jax.random.normal(jax.random.key(1), (*size, shape[-1], out)) * 0.1
        diff = float(
            jnp.max(
                jnp.abs(conv3d(x, kernel, strides, padding) - folded(x, kernel, strides, padding))
            )
        )
        t3 = seconds(lambda x, k: conv3d(x, k, strides, padding), x, kernel, args.repeats)
        t2 = seconds(lambda x, k: folded(x, k, strides, padding), x, kernel, args.repeats)
        print(
            f"{name:26s} 3-D {1e3 * t3:8.1f} ms  2-D fold {1e3 * t2:8.1f} ms  "
            f"speed-up {t3 / t2:5.2f}x  max|diff| {diff:.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
