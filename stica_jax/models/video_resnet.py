"""R(2+1)D-18 video backbone with torchvision's exact structure (`r2plus1d_18`).

Layout is channels-last: input `[B, T, H, W, 3]`, output the res5 map `[B, T', H', W', C]`
before any pooling (`[B, 8, 7, 7, 512]` for 60 frames at 112×112). Stage widths and depths
are configurable so tests and the demo can run a slim variant; the default is full size.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from stica_jax.models.layers import Dtype, batch_norm, conv


def conv2plus1d_mid_width(in_width: int, width: int) -> int:
    """Width of the (2+1)D factorisation that matches a full 3×3×3 conv's parameter count.

    torchvision computes it once per block from (block input width, block width) and uses it
    for both of the block's Conv2Plus1D: 144,144 | 230,288 | 460,576 | 921,1152 for R(2+1)D-18.
    """
    return (in_width * width * 3 * 3 * 3) // (in_width * 3 * 3 + 3 * width)


def stem_mid_width(first_width: int) -> int:
    """torchvision's R(2+1)D stem uses a fixed 45 channels for a 64-wide first stage."""
    return max(1, round(45 * first_width / 64))


class Conv2Plus1D(nnx.Module):
    """Spatial (1,3,3) conv → BN → ReLU → temporal (3,1,1) conv; stride applies to T, H, W."""

    def __init__(self, in_width, width, mid_width, stride, *, axis_name, dtype, rngs):
        self.spatial = conv(
            in_width, mid_width, (1, 3, 3), (1, stride, stride), (0, 1, 1), dtype=dtype, rngs=rngs
        )
        self.bn = batch_norm(mid_width, axis_name=axis_name, dtype=dtype, rngs=rngs)
        self.temporal = conv(
            mid_width, width, (3, 1, 1), (stride, 1, 1), (1, 0, 0), dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.temporal(jax.nn.relu(self.bn(self.spatial(x))))


class Block(nnx.Module):
    """torchvision's video BasicBlock: two Conv2Plus1D with BN, a conv+BN shortcut on change."""

    def __init__(self, in_width, width, stride, *, axis_name, dtype, rngs):
        mid = conv2plus1d_mid_width(in_width, width)
        kw = dict(axis_name=axis_name, dtype=dtype, rngs=rngs)
        self.conv1 = Conv2Plus1D(in_width, width, mid, stride, **kw)
        self.bn1 = batch_norm(width, **kw)
        self.conv2 = Conv2Plus1D(width, width, mid, 1, **kw)
        self.bn2 = batch_norm(width, **kw)
        if stride != 1 or in_width != width:
            self.downsample_conv = conv(
                in_width, width, (1, 1, 1), (stride,) * 3, (0, 0, 0), dtype=dtype, rngs=rngs
            )
            self.downsample_bn = batch_norm(width, **kw)
        else:
            self.downsample_conv = self.downsample_bn = None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = (
            x if self.downsample_conv is None else self.downsample_bn(self.downsample_conv(x))
        )
        return jax.nn.relu(y + shortcut)


class Stem(nnx.Module):
    """(1,7,7)/(1,2,2) conv 3→45 → BN → ReLU → (3,1,1) conv 45→64 → BN → ReLU. No max-pool."""

    def __init__(self, width, *, axis_name, dtype, rngs):
        mid = stem_mid_width(width)
        kw = dict(axis_name=axis_name, dtype=dtype, rngs=rngs)
        self.spatial = conv(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(mid, **kw)
        self.temporal = conv(mid, width, (3, 1, 1), (1, 1, 1), (1, 0, 0), dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(width, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.bn1(self.spatial(x)))
        return jax.nn.relu(self.bn2(self.temporal(x)))


class VideoResNet(nnx.Module):
    """R(2+1)D ResNet; `widths=(64,128,256,512)`, `depths=(2,2,2,2)` is torchvision's r2plus1d_18."""

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 2, 2),
        *,
        axis_name: str | None = None,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"widths {widths} and depths {depths} must be non-empty, same length")
        kw = dict(axis_name=axis_name, dtype=dtype, rngs=rngs)
        self.widths, self.depths = tuple(widths), tuple(depths)
        self.stem = Stem(widths[0], **kw)
        layers = []
        in_width = widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(Block(in_width, width, stride, **kw))
                in_width = width
            layers.append(nnx.List(blocks))
        self.layers = nnx.List(layers)
        self.out_features = widths[-1]

    def __call__(self, video: jax.Array) -> jax.Array:
        """video `[B, T, H, W, 3]` (normalised) → feature map `[B, T', H', W', widths[-1]]`."""
        if video.ndim != 5 or video.shape[-1] != 3:
            raise ValueError(
                f"video must be [B, T, H, W, 3] (channels last, RGB), got shape {video.shape}"
            )
        x = self.stem(video)
        for layer in self.layers:
            for block in layer:
                x = block(x)
        return x
