"""Supervised training (`mode="supervised"`, seed Table 8): the loss is device-count free, the
crops are real, and a tiny AV-digits run trains, evaluates and restores as a classifier."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from stica_jax import config_checks, restore, step, train
from stica_jax.losses import classification_loss
from stica_jax.models import VideoClassifier, build_train_model
from tests.test_step import _rel
from tests.tiny import eval_outputs, random_supervised_batch, split_in, tiny_supervised_config

GLOBAL_BATCH = 8


def test_supervised_configs_are_table_8s_two_rows():
    from configs import sota, supervised_k400, supervised_k400_crops

    plain, crops, pre = (
        supervised_k400.get_config(),
        supervised_k400_crops.get_config(),
        sota.get_config(),
    )
    assert plain.mode == crops.mode == "supervised"
    assert not plain.crops.enabled and crops.crops.enabled
    c = crops.crops  # 2 medium + 2 small space crops, no temporal ones
    assert (c.n_space_large, c.n_space_small, c.n_time_large, c.n_time_small) == (2, 2, 0, 0)
    assert (c.space_large, c.space_small) == (pre.crops.space_large, pre.crops.space_small)
    assert plain.model == pre.model and plain.input == pre.input  # only the training differs


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda c: setattr(c.eval, "method", "linear_probe"),
            r"unknown eval.method 'linear_probe' for mode 'supervised'; expected one of \['classifier', ",
        ),
        (
            lambda c: setattr(c.supervised, "crop_loss_weight", 1.5),
            r"supervised.crop_loss_weight=1.5 must be in \[0, 1\]",
        ),
        (
            lambda c: setattr(c.crops, "space_large", 8),
            "crops do not fit the input .* large spatial crop 8×8 is larger than the 7×7",
        ),
    ],
)
def test_supervised_config_errors_are_one_clear_line(change, message):
    from configs import supervised_k400_crops

    config = supervised_k400_crops.get_config()
    change(config)
    with pytest.raises(train.ConfigError, match=message) as e:
        config_checks.validate_config(config, num_devices=8, num_processes=1)
    assert "\n" not in str(e.value)


def test_crop_loss_is_the_mean_ce_of_crops_weighed_against_the_full_clip():
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    crop_logits = jnp.array([[[0.0, 3.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]])
    labels = jnp.array([0, 1])

    def ce(z, y):
        return -jax.nn.log_softmax(z)[y]

    full = (ce(logits[0], 0) + ce(logits[1], 1)) / 2
    crops = sum(ce(crop_logits[i, j], labels[i]) for i in range(2) for j in range(2)) / 4
    loss, aux = classification_loss(logits, labels, crop_logits, crop_loss_weight=0.25)
    np.testing.assert_allclose(loss, 0.75 * full + 0.25 * crops, rtol=1e-6)
    assert float(aux["top1"]) == 1.0 and float(aux["crops_top1"]) == 0.5
    plain, _ = classification_loss(logits, labels)
    np.testing.assert_allclose(plain, full, rtol=1e-6)


def _grads(config, num_devices: int, dtype=np.float32):
    graphdef, params, stats, batch = split_in(
        build_train_model(config, axis_name=step.MESH_AXIS, rngs=nnx.Rngs(0)),
        random_supervised_batch(config, GLOBAL_BATCH),
        dtype,
    )
    grad_fn = step.make_grad_fn(
        graphdef, step.loss_config_for(config), step.make_mesh(jax.devices()[:num_devices])
    )
    loss, aux, grads, new_stats = jax.device_get(grad_fn(params, stats, batch, jax.random.key(0)))
    return loss, aux, jax.tree.leaves(grads), jax.tree.leaves(new_stats)


@pytest.mark.slow
def test_supervised_loss_and_grads_with_crops_are_device_count_invariant():
    """Crops, per-sample dropout and SyncBN on; in float64, to test_step.py's tolerances.

    Without crops the step is this one less its crop term (`classification_loss`, checked by
    hand above): the full-clip loss, dropout, SyncBN and the gradient sum are all in here."""
    config = tiny_supervised_config("float64", crops=True)
    with jax.enable_x64(True):
        (l1, aux1, g1, s1), (l8, aux8, g8, s8) = (_grads(config, n, np.float64) for n in (1, 8))
    np.testing.assert_allclose(l8, l1, rtol=1e-10)
    for k in aux1:
        np.testing.assert_allclose(aux8[k], aux1[k], rtol=1e-10, err_msg=k)
    assert _rel(g1, g8) < 1e-6 and _rel(s1, s8) < 1e-10
    scale = max(float(np.abs(g).max()) for g in g1)
    for a, b in zip(g1, g8):  # element-wise too; atol for leaves whose true gradient is ~0
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7 * scale)
    assert sum(float(np.sum(np.asarray(g) ** 2)) for g in g1) > 1e-2  # not vacuous


def test_crops_follow_their_keys_and_a_map_sized_crop_is_the_full_clip():
    config = tiny_supervised_config(dropout=0.0)
    video = jnp.asarray(random_supervised_batch(config, 2)["video"])
    keys = step.sample_keys(jax.random.key(0), jnp.arange(2))
    # Jitted: op by op, each of the network's small ops would be a compile of its own.
    outputs = nnx.jit(lambda model, video, keys: model.training_outputs(video, keys))
    model = build_train_model(config, rngs=nnx.Rngs(0))
    model.train()
    out = outputs(model, video, keys)
    assert out["logits"].shape == (2, 10) and out["crop_logits"].shape == (2, 4, 10)
    again = outputs(model, video, keys)  # same keys: same crops
    np.testing.assert_array_equal(again["crop_logits"], out["crop_logits"])
    other = outputs(model, video, step.sample_keys(jax.random.key(1), jnp.arange(2)))
    assert not np.allclose(other["crop_logits"], out["crop_logits"])
    # 4×4 crops of the 4×4 map go through the same pooling and fc as the full map.
    config.crops.space_large, config.crops.n_space_small = 4, 0
    model = build_train_model(config, rngs=nnx.Rngs(0))
    model.train()
    out = outputs(model, video, keys)
    for j in range(2):
        np.testing.assert_allclose(out["crop_logits"][:, j], out["logits"], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def supervised_run(tmp_path_factory):
    from tests import tiny_supervised_config as tiny_run_config

    config = tiny_run_config.get_config()
    config.data_dir = str(tmp_path_factory.mktemp("data"))
    workdir = str(tmp_path_factory.mktemp("work"))
    return config, workdir, train.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_tiny_supervised_run_learns_evaluates_and_restores_a_classifier(supervised_run, capsys):
    config, workdir, summary = supervised_run
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    history = [h for h in lines if "loss" in h]
    assert [h["step"] for h in history] == list(range(1, 13))
    losses = [h["loss"] for h in history]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # real steps on real data drop the loss
    for key in (
        "loss_ce",
        "loss_crops",
        "top1",
        "crops_top1",
        "learning_rate",
        "grad_norm",
        "clips_per_sec",
    ):
        assert key in history[-1], key
    top1 = summary["probe"]["trained"]["video"]
    assert lines[-1] == {"step": 12, "eval/classifier_video_top1": top1}
    saved, model, step_ = restore.restore_model(workdir)
    assert step_ == 12 and saved.supervised.num_classes == 10  # read from AV-digits
    assert isinstance(model, VideoClassifier) and model.fc.kernel.shape == (16, 10)
    # The reported top-1, recomputed from the restored classifier (spec §10: each test video's
    # logits averaged over its clips × crops, then the argmax), in NumPy: the evaluation's own
    # gathering and accuracy code is not used.
    model.eval()
    forward = nnx.jit(lambda model, video: model(video))
    logits, labels = eval_outputs(
        saved, "video", saved.eval.test_split, lambda x: forward(model, x)
    )
    assert len(labels) == 24  # AV-digits' tiny test split, each video once
    np.testing.assert_allclose(top1, 100.0 * np.mean(logits.argmax(-1) == labels), atol=1e-4)
