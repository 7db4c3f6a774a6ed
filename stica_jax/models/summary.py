"""Model summary without running the model: parameter counts, shapes and multiply-adds.

Everything is traced abstractly (`nnx.eval_shape`, `jax.make_jaxpr` on shape structs), so
the full-size model is summarised in seconds on a laptop. Multiply-adds are counted from the
traced convolutions and matrix products (torchvision's "GFLOPS" figures are such MACs).
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
from flax import nnx

from stica_jax.models import STiCA, VideoClassifier, build_train_model
from stica_jax.shapes import input_shapes


def count_params(module: nnx.Module) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _jaxpr_macs(jaxpr: jax.extend.core.Jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial)
            per_output = rhs[rhs_spec[1]] * math.prod(rhs[d] for d in rhs_spec[2:])
            # An lhs-dilated convolution (the input gradient of a strided one) multiplies
            # inserted zeros: count only the products with real inputs.
            dilation = math.prod(eqn.params.get("lhs_dilation") or (1,))
            total += math.prod(eqn.outvars[0].aval.shape) * per_output // dilation
        elif eqn.primitive.name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            total += _jaxpr_macs(sub)
    return total


def count_macs(fn: Callable, *args: Any) -> int:
    """Multiply-adds of convolutions and matrix products in `fn(*args)` (shape structs ok).

    Zeros inserted by lhs dilation (backward passes of strided convolutions) are not counted.
    """
    return _jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr)


def abstract_model(config: Any) -> STiCA | VideoClassifier:
    """The model `config.mode` trains (STiCA, or the classifier of a supervised config) with
    shape-only parameters (nothing allocated)."""
    if config.get("mode", "pretrain") == "supervised" and not config.supervised.num_classes:
        raise ValueError(
            "supervised.num_classes is 0 (read from the dataset at train time); "
            "give it for the summary, e.g. --config.supervised.num_classes=400"
        )
    return nnx.eval_shape(lambda: build_train_model(config, rngs=nnx.Rngs(0)))


def summarize(config: Any) -> dict[str, Any]:
    """Parameter counts per module, output shapes and MACs per clip of the config's model
    (STiCA, or for `mode="supervised"` the video classifier)."""
    model = abstract_model(config)
    supervised = isinstance(model, VideoClassifier)
    video_shape, audio_shape = input_shapes(config.input, batch=2)
    video = jax.ShapeDtypeStruct(video_shape, jnp.float32)
    audio = jax.ShapeDtypeStruct(audio_shape, jnp.float32)
    keys = jax.ShapeDtypeStruct((2,), jax.random.key(0).dtype)
    graphdef, state = nnx.split(model)

    def call(method: str, *args):
        def fn(state, *args):
            m = nnx.merge(graphdef, state)
            m.eval()
            return getattr(m, method)(*args)

        return fn

    if supervised:

        def forward(state, v, k):
            return nnx.merge(graphdef, state).training_outputs(v, k)

        forward_args = (video, keys)
        modules = ("video_backbone", "video_pooling", "fc")
    else:

        def forward(state, v1, v2, a, k):
            return nnx.merge(graphdef, state)(v1, v2, a, k)

        forward_args = (video, video, audio, keys)
        modules = ("video_backbone", "video_pooling", "video_head", "audio_backbone", "audio_head")
    outputs = jax.eval_shape(forward, state, *forward_args)
    summary = {
        "params": {name: count_params(getattr(model, name)) for name in modules},
        "total_params": count_params(model),
        "inputs": {"video": video_shape[1:]},
        "video_map": tuple(jax.eval_shape(call("video_map"), state, video).shape[1:]),
        "outputs": jax.tree.map(lambda x: tuple(x.shape), outputs),
        # MACs per clip (the traces use a batch of 2; convolutions and products scale with it).
        "macs_video_backbone": count_macs(call("video_map"), state, video) // 2,
        "macs_train_forward": count_macs(forward, state, *forward_args) // 2,
    }
    if supervised:
        summary["kind"] = "supervised"
    else:
        summary["inputs"]["audio"] = audio_shape[1:]
        summary["audio_map"] = tuple(jax.eval_shape(call("audio_map"), state, audio).shape[1:])
        summary["macs_audio_backbone"] = count_macs(call("audio_map"), state, audio) // 2
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The text `python -m stica_jax.models` prints for `summarize(config)`."""
    supervised = summary.get("kind") == "supervised"
    title = "Supervised video classifier" if supervised else "STiCA model"
    lines = [
        f"{title} summary (abstract trace, nothing computed)",
        "",
        f"{'module':<18}{'parameters':>14}",
    ]
    lines += [f"{name:<18}{n:>14,}" for name, n in summary["params"].items()]
    lines.append(f"{'total':<18}{summary['total_params']:>14,}")
    inputs = ", ".join(f"{k} {v}" for k, v in summary["inputs"].items())
    lines += ["", f"input per clip: {inputs}", f"video map before pooling: {summary['video_map']}"]
    if not supervised:
        lines.append(f"audio map before pooling: {summary['audio_map']}")
    lines.append("training forward outputs (batch 2):")
    for path, shape in jax.tree_util.tree_flatten_with_path(
        summary["outputs"], is_leaf=lambda x: isinstance(x, tuple)
    )[0]:
        lines.append(f"  {jax.tree_util.keystr(path):<32}{shape}")
    g = 1e9
    lines += [
        "",
        "multiply-adds per clip:",
        f"  {'video backbone' + ('' if supervised else ', one view'):<27}"
        f"{summary['macs_video_backbone'] / g:8.2f} G",
    ]
    if not supervised:
        lines.append(f"  {'audio backbone':<27}{summary['macs_audio_backbone'] / g:8.2f} G")
    what = "clip and crops" if supervised else "2 views, audio, crops, heads"
    lines.append(f"  training forward ({what}) {summary['macs_train_forward'] / g:8.2f} G")
    return "\n".join(lines)
