"""ResNet-9 audio backbone: torchvision `ResNet(BasicBlock, [1, 1, 1, 1])` with a 1-channel conv1.

Input is a log-mel spectrogram `[B, F, T, 1]` (frequency first, like torch's `[B, 1, F, T]`);
the output is the map before pooling, `[B, F', T', 512]` (`9×7` for a 257×199 input).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from stica_jax.models.layers import Dtype, batch_norm, conv


class BasicBlock(nnx.Module):
    """Two 3×3 convs with BN; a 1×1 conv + BN shortcut where the shape changes."""

    def __init__(self, in_width, width, stride, *, axis_name, dtype, rngs):
        kw = dict(axis_name=axis_name, dtype=dtype, rngs=rngs)
        self.conv1 = conv(in_width, width, (3, 3), (stride, stride), (1, 1), dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(width, **kw)
        self.conv2 = conv(width, width, (3, 3), (1, 1), (1, 1), dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(width, **kw)
        if stride != 1 or in_width != width:
            self.downsample_conv = conv(
                in_width, width, (1, 1), (stride, stride), (0, 0), dtype=dtype, rngs=rngs
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


class AudioResNet(nnx.Module):
    """conv1 7×7/2 → BN → ReLU → max-pool 3×3/2 → one BasicBlock per stage (strides 1,2,2,2)."""

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512),
        *,
        axis_name: str | None = None,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(axis_name=axis_name, dtype=dtype, rngs=rngs)
        self.widths = tuple(widths)
        self.conv1 = conv(1, widths[0], (7, 7), (2, 2), (3, 3), dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(widths[0], **kw)
        blocks, in_width = [], widths[0]
        for i, width in enumerate(widths):
            blocks.append(BasicBlock(in_width, width, 1 if i == 0 else 2, **kw))
            in_width = width
        self.layers = nnx.List(blocks)
        self.out_features = widths[-1]

    def __call__(self, audio: jax.Array) -> jax.Array:
        """audio `[B, F, T, 1]` log-mel → map `[B, F', T', widths[-1]]` before pooling."""
        if audio.ndim != 4 or audio.shape[-1] != 1:
            raise ValueError(
                f"audio must be a spectrogram [B, F, T, 1] (frequency first, one channel), "
                f"got shape {audio.shape}"
            )
        x = jax.nn.relu(self.bn1(self.conv1(audio)))
        # torch pads max-pool with -inf; flax's max_pool does too.
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for block in self.layers:
            x = block(x)
        return x
