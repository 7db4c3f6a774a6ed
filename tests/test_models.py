"""Networks: full-size structure via eval_shape, pooling of any length, bf16, input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import sota
from stica_jax.models.audio_resnet import AudioResNet
from stica_jax.models.classifier import VideoClassifier
from stica_jax.models.summary import count_macs, count_params, format_summary, summarize
from stica_jax.models.temporal_pooling import TransformerPool, make_temporal_pooling
from stica_jax.models.video_resnet import VideoResNet, conv2plus1d_mid_width
from tests.tiny import random_batch, tiny_config, tiny_model


def _out_shape(module, shape):
    return nnx.eval_shape(lambda m, x: m(x), module, jax.ShapeDtypeStruct(shape, jnp.float32)).shape


def test_r2plus1d18_full_size_matches_torchvision_counts_and_shapes():
    model = nnx.eval_shape(lambda: VideoResNet(rngs=nnx.Rngs(0)))
    assert count_params(model) == 31_300_125
    assert _out_shape(model, (2, 60, 112, 112, 3)) == (2, 8, 7, 7, 512)
    assert _out_shape(model, (2, 30, 112, 112, 3)) == (2, 4, 7, 7, 512)
    # torchvision reports 40.52 "GFLOPS" (multiply-adds) for a 16×112×112 clip.
    macs = count_macs(
        lambda m, x: m(x), model, jax.ShapeDtypeStruct((1, 16, 112, 112, 3), jnp.float32)
    )
    assert round(macs / 1e9, 2) == 40.52


def test_r2plus1d18_with_fc_has_torchvision_parameter_count():
    model = nnx.eval_shape(lambda: VideoClassifier(400, pooling="avg", rngs=nnx.Rngs(0)))
    assert count_params(model) == 31_505_325


def test_conv2plus1d_mid_widths_are_torchvision_s():
    pairs = [(64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
    assert [conv2plus1d_mid_width(a, b) for a, b in pairs] == [144, 230, 288, 460, 576, 921, 1152]


def test_resnet9_full_size_count_and_map():
    model = nnx.eval_shape(lambda: AudioResNet(rngs=nnx.Rngs(0)))
    assert count_params(model) == 4_899_520
    assert _out_shape(model, (2, 257, 199, 1)) == (2, 9, 7, 512)


def test_sota_summary_reports_every_module_and_output():
    s = summarize(sota.get_config())
    assert s["params"]["video_backbone"] == 31_300_125
    assert s["params"]["audio_backbone"] == 4_899_520
    assert s["total_params"] == sum(s["params"].values())
    assert s["video_map"] == (8, 7, 7, 512) and s["audio_map"] == (9, 7, 512)
    out = s["outputs"]
    assert out["video"] == (2, 2, 256) and out["audio"] == (2, 256)
    assert out["crops"]["space"] == {"large": (2, 2, 2, 256), "small": (2, 4, 256)}
    assert out["crops"]["time"] == {"large": (2, 2, 2, 256), "small": (2, 1, 256)}
    # Two 60-frame views cost about 2 × 152 G; crops and heads add comparatively little.
    assert 2 * s["macs_video_backbone"] < s["macs_train_forward"] < 2.2 * s["macs_video_backbone"]


def test_supervised_summary_is_the_classifier():
    from configs import supervised_k400_crops

    config = supervised_k400_crops.get_config()
    s = summarize(config)
    assert s["params"]["video_backbone"] == 31_300_125
    assert s["params"]["fc"] == 512 * 400 + 400
    assert s["total_params"] == sum(s["params"].values())
    assert s["video_map"] == (8, 7, 7, 512)
    assert s["outputs"] == {"logits": (2, 400), "crop_logits": (2, 4, 400)}
    assert s["macs_video_backbone"] < s["macs_train_forward"] < 1.01 * s["macs_video_backbone"]
    text = format_summary(s)
    assert text.startswith("Supervised video classifier") and "audio" not in text
    config.supervised.num_classes = 0
    with pytest.raises(ValueError, match="num_classes"):
        summarize(config)


@pytest.mark.parametrize("tokens", [2, 3, 4, 6, 8])
def test_transformer_pools_any_token_count(tokens):
    pool = TransformerPool(16, num_layers=2, num_heads=4, mlp_width=32, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(tokens), (3, tokens, 16))
    apply = nnx.jit(lambda pool, x: pool(x))  # op by op, each small op would be a compile
    y = apply(pool, x)
    assert y.shape == (3, 16) and bool(jnp.all(jnp.isfinite(y)))
    # Output is the mean of contextualised tokens: reordering the inputs changes it
    # (learned positions), so the positional embedding is really used.
    assert not np.allclose(apply(pool, x[:, ::-1]), y, atol=1e-5)


def test_transformer_refuses_more_tokens_than_positions():
    pool = TransformerPool(16, num_heads=4, mlp_width=32, max_len=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="5 tokens, more than its 4 learned positions"):
        pool(jnp.zeros((1, 5, 16)))


def test_unknown_pooling_is_named():
    with pytest.raises(ValueError, match="unknown temporal pooling 'max'"):
        make_temporal_pooling("max", 16, rngs=nnx.Rngs(0))


def test_bf16_compute_stays_close_to_f32():
    """Same parameters, bf16 activations: embeddings within 0.05 (unit vectors, cosine > 0.99)."""
    config32, config16 = tiny_config("float32"), tiny_config("bfloat16")
    m32, m16 = tiny_model(config32), tiny_model(config16)
    nnx.update(m16, nnx.state(m32))
    params16 = nnx.state(m16, nnx.Param)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params16))
    batch = random_batch(config32, 4)
    m32.eval(), m16.eval()
    # Jitted: op by op, each of the network's small ops would be a compile of its own.
    embed_video = nnx.jit(lambda m, v: m.embed_video(v))
    embed_audio = nnx.jit(lambda m, a: m.embed_audio(a))
    z32 = embed_video(m32, batch["video1"])
    z16 = embed_video(m16, batch["video1"])
    assert z16.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(z32 - z16))) < 0.05
    assert float(jnp.min(jnp.sum(z32 * z16, -1))) > 0.99
    a32, a16 = embed_audio(m32, batch["audio"]), embed_audio(m16, batch["audio"])
    assert float(jnp.min(jnp.sum(a32 * a16, -1))) > 0.99


def test_stica_forward_shapes_and_maps():
    config = tiny_config()
    model = tiny_model(config)
    batch = random_batch(config, 2)
    keys = jax.random.split(jax.random.key(0), 2)
    out = nnx.eval_shape(
        lambda m: m(batch["video1"], batch["video2"], batch["audio"], keys, return_maps=True), model
    )
    assert out["video"].shape == (2, 2, 8) and out["audio"].shape == (2, 8)
    assert out["video_map"].shape == (2, 2, 2, 4, 4, 16)
    assert out["audio_map"].shape == (2, 2, 4, 16)
    assert out["crops"]["space"]["large"].shape == (2, 2, 2, 8)
    assert out["crops"]["space"]["small"].shape == (2, 4, 8)


@pytest.mark.parametrize(
    "shape,message",
    [
        ((2, 16, 64, 64), r"video must be \[B, T, H, W, 3\].*\(2, 16, 64, 64\)"),
        ((2, 16, 64, 64, 1), r"video must be \[B, T, H, W, 3\].*\(2, 16, 64, 64, 1\)"),
    ],
)
def test_bad_video_is_named(shape, message):
    model = tiny_model()
    with pytest.raises(ValueError, match=message):
        model.video_map(jnp.zeros(shape))


@pytest.mark.parametrize("shape", [(2, 40, 99), (2, 40, 99, 2), (2, 1, 40, 99, 1)])
def test_bad_audio_is_named(shape):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"audio must be a spectrogram \[B, F, T, 1\]"):
        model.audio_map(jnp.zeros(shape))
