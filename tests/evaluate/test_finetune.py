"""Fine-tuning and the linear probe (spec §10): the official schedule and parameter groups
against torch, the 10 × 3 view averaging against NumPy, the frozen backbone, folds, resume."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from configs.eval import (
    demo_finetune,
    demo_linear,
    finetune_hmdb51,
    finetune_ucf101,
    linear_hmdb51,
    linear_ucf101,
)
from stica_jax import step as step_lib
from stica_jax.errors import NonFiniteError
from stica_jax.evaluate import finetune, finetune_optimizer, folds, results as results_lib
from stica_jax.evaluate.init import Pretrained
from stica_jax.models import build_model
from stica_jax.models.classifier import VideoClassifier
from tests.evaluate.conftest import tiny_digits_name
from tests.tiny import tiny_config, tiny_model

# ---------------------------------------------------------------------------------------------
# The schedule and the optimizer, step by step against torch
# ---------------------------------------------------------------------------------------------


def torch_official_scheduler(optimizer, o):
    """eval_video.py's scheduler, from the PyPI `warmup-scheduler` (the package GDT's
    src/scheduler.py copies): GradualWarmupScheduler chained with torch's MultiStepLR."""
    torch = pytest.importorskip("torch")
    warmup_scheduler = pytest.importorskip("warmup_scheduler")
    milestones = [m - o.warmup_epochs for m in o.milestones]
    after = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=o.gamma)
    return warmup_scheduler.GradualWarmupScheduler(
        optimizer,
        multiplier=o.warmup_multiplier,
        total_epoch=o.warmup_epochs,
        after_scheduler=after,
    )


def test_the_lr_of_every_epoch_is_the_official_schedulers_with_its_x8_warmup():
    torch = pytest.importorskip("torch")
    config = finetune_hmdb51.get_config()
    o = config.optimizer
    head, backbone = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD(
        [{"params": [head], "lr": o.head_lr}, {"params": [backbone], "lr": o.backbone_lr}],
        lr=o.head_lr,
        momentum=o.momentum,
    )
    scheduler = torch_official_scheduler(optimizer, o)
    torch_lrs = []
    for _ in range(config.num_epochs):  # eval_video.py: train an epoch, then scheduler.step()
        torch_lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    factors = finetune_optimizer.official_lr_factors(
        config.num_epochs,
        warmup_epochs=o.warmup_epochs,
        multiplier=o.warmup_multiplier,
        milestones=o.milestones,
        gamma=o.gamma,
    )
    np.testing.assert_allclose(
        [[o.head_lr * f, o.backbone_lr * f] for f in factors], torch_lrs, rtol=1e-12
    )
    assert max(factors) == 8.0  # the ×8 peak the spec omitted
    # The per-step schedule holds each epoch's LR for the whole epoch.
    schedule = finetune_optimizer.epoch_schedule(o.head_lr, factors, steps_per_epoch=3)
    got = [float(schedule(step)) for step in range(3 * config.num_epochs)]
    np.testing.assert_allclose(got, np.repeat([lr for lr, _ in torch_lrs], 3), rtol=1e-6)


def test_the_optimizer_is_torch_sgd_over_the_official_groups_step_by_step():
    """Head, backbone and pooling groups with their LRs and weight decays, momentum, coupled
    decay and the per-epoch schedule: the same parameters as torch SGD fed the same gradients."""
    torch = pytest.importorskip("torch")
    config = finetune_hmdb51.get_config()
    o = config.optimizer
    o.pooling_lr, o.pooling_weight_decay, o.backbone_weight_decay = 0.0004, 0.01, 0.003
    steps_per_epoch = 2
    rng = np.random.default_rng(0)
    params = {
        "fc": {"kernel": rng.standard_normal((4, 3)).astype(np.float32)},
        "video_backbone": {"w": rng.standard_normal((5,)).astype(np.float32)},
        "video_pooling": {"w": rng.standard_normal((2, 2)).astype(np.float32)},
    }
    optimizer, _ = finetune_optimizer.official_optimizer(config, steps_per_epoch)
    state = optimizer.init(params)
    torch_params = {
        k: torch.nn.Parameter(torch.from_numpy(v["w" if "w" in v else "kernel"]))
        for k, v in params.items()
    }
    groups = [
        {"params": [torch_params["fc"]], "lr": o.head_lr, "weight_decay": o.weight_decay},
        {
            "params": [torch_params["video_backbone"]],
            "lr": o.backbone_lr,
            "weight_decay": o.backbone_weight_decay,
        },
        {
            "params": [torch_params["video_pooling"]],
            "lr": o.pooling_lr,
            "weight_decay": o.pooling_weight_decay,
        },
    ]
    torch_optimizer = torch.optim.SGD(groups, lr=o.head_lr, momentum=o.momentum)
    scheduler = torch_official_scheduler(torch_optimizer, o)
    jax_params = jax.tree.map(jnp.asarray, params)
    for step in range(config.num_epochs * steps_per_epoch):
        grads = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
        updates, state = optimizer.update(grads, state, jax_params)
        jax_params = optax.apply_updates(jax_params, updates)
        for key, p in torch_params.items():
            p.grad = torch.from_numpy(next(iter(grads[key].values())))
        torch_optimizer.step()
        if (step + 1) % steps_per_epoch == 0:
            scheduler.step()
    for key, p in torch_params.items():
        np.testing.assert_allclose(
            next(iter(jax_params[key].values())), p.detach().numpy(), rtol=2e-5, atol=1e-7
        )


# ---------------------------------------------------------------------------------------------
# The head, the view averaging, the frozen backbone
# ---------------------------------------------------------------------------------------------


def tiny_finetune_config():
    from tests import tiny_eval_config

    config = tiny_eval_config.get_config()
    config.model = tiny_config().model
    return config


def tiny_pretrained() -> Pretrained:
    model = tiny_model()
    model.eval()
    return Pretrained(
        model,
        tiny_finetune_config(),
        {"kind": "random", "source": "", "step": None},
        frozenset(),
        "random",
    )


def test_the_head_is_orthogonal_with_zero_bias_over_the_pretrained_backbone():
    pretrained = tiny_pretrained()
    classifier = finetune.build_classifier(pretrained.config, pretrained, 10, seed=3)
    kernel = np.asarray(classifier.fc.kernel.get_value())  # [16, 10]: torch's weight is [10, 16]
    np.testing.assert_allclose(kernel.T @ kernel, np.eye(10), atol=1e-5)  # orthonormal rows of W
    assert not np.any(np.asarray(classifier.fc.bias.get_value()))
    for got, want in zip(
        jax.tree.leaves(nnx.state(classifier.video_backbone)),
        jax.tree.leaves(nnx.state(pretrained.model.video_backbone)),
    ):
        np.testing.assert_array_equal(got, want)


def test_transformer_pooling_fine_tunes_the_pretrained_transformer():
    pretrained = tiny_pretrained()
    config = pretrained.config
    config.pooling = "transformer"
    classifier = finetune.build_classifier(config, pretrained, 10, seed=0)
    for got, want in zip(
        jax.tree.leaves(nnx.state(classifier.video_pooling)),
        jax.tree.leaves(nnx.state(pretrained.model.video_pooling)),
    ):
        np.testing.assert_array_equal(got, want)


def test_video_scores_are_the_mean_of_the_views_logits_and_topk_is_right():
    """10 clips × 3 crops: the protocol's per-video scores equal NumPy's mean of each view's
    logits computed one view at a time; top-1 / top-5 equal a direct count."""
    config = tiny_finetune_config()
    pretrained = tiny_pretrained()
    classifier = finetune.build_classifier(config, pretrained, 7, seed=1)
    classifier.eval()
    mesh = step_lib.make_mesh(jax.devices()[:2])
    graphdef, params, batch_stats = nnx.split(classifier, nnx.Param, nnx.BatchStat)
    rng = np.random.default_rng(0)
    videos = rng.standard_normal((4, 30, 4, 32, 32, 3)).astype(np.float32)  # B, 10 × 3 views
    got = np.asarray(
        finetune.make_view_logits_fn(graphdef, mesh)(
            params, batch_stats, jax.device_put(videos, NamedSharding(mesh, P("data")))
        )
    )
    one_view = jax.jit(lambda p, b, v: nnx.merge(graphdef, p, b)(v))  # [B, T, S, S, 3] → [B, K]
    per_view = np.stack(
        [np.asarray(one_view(params, batch_stats, videos[:, j])) for j in range(30)], axis=1
    )  # [B, 30, K], each view on its own
    want = per_view.mean(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    labels = np.array([0, 3, 5, 6])
    top1 = 100 * np.mean([np.argmax(s) == y for s, y in zip(want, labels)])
    top5 = 100 * np.mean(
        [y in sorted(range(7), key=lambda k: -s[k])[:5] for s, y in zip(want, labels)]
    )
    assert finetune.topk_accuracy(want, labels, 1) == pytest.approx(top1)
    assert finetune.topk_accuracy(want, labels, 5) == pytest.approx(top5)


def train_a_few_steps(train_backbone: bool):
    config = tiny_finetune_config()
    pretrained = tiny_pretrained()
    # Running statistics away from their init, so that a BatchNorm in train mode would move them.
    stats = nnx.state(pretrained.model, nnx.BatchStat)
    nnx.update(pretrained.model, jax.tree.map(lambda x: 1.5 * x + 0.1, stats))
    classifier = finetune.build_classifier(config, pretrained, 5, seed=0)
    graphdef, params, batch_stats = nnx.split(classifier, nnx.Param, nnx.BatchStat)
    optimizer, _ = finetune_optimizer.official_optimizer(config, steps_per_epoch=2)
    trainable, _ = step_lib.split_trainable(params, finetune.trainable_filter(train_backbone))
    state = step_lib.TrainState(
        jnp.zeros((), jnp.int32), params, batch_stats, optimizer.init(trainable)
    )
    before = jax.device_get(state)
    mesh = step_lib.make_mesh(jax.devices()[:2])
    state = jax.device_put(state, NamedSharding(mesh, P()))
    train_step = finetune.fold_train_step(graphdef, optimizer, mesh, train_backbone=train_backbone)
    rng = np.random.default_rng(1)
    for step in range(3):
        batch = {
            "video": rng.standard_normal((4, 8, 32, 32, 3)).astype(np.float32) + step,
            "label": rng.integers(0, 5, 4).astype(np.int32),
            "index": np.arange(4) + 4 * step,
        }
        state, metrics = train_step(state, step_lib.global_batch(batch, mesh), jax.random.key(0))
        assert metrics["finite"] == 1
    return before, jax.device_get(state)


def _leaves(tree, predicate):
    return {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if predicate(jax.tree_util.keystr(path))
    }


def test_the_linear_probe_leaves_the_backbone_and_its_bn_statistics_bit_identical():
    before, after = train_a_few_steps(train_backbone=False)
    frozen = lambda key: "'fc'" not in key  # noqa: E731
    for name, tree in (("params", "params"), ("batch_stats", "batch_stats")):
        old = _leaves(getattr(before, tree), frozen)
        new = _leaves(getattr(after, tree), frozen)
        assert old.keys() == new.keys() and old, name
        for key in old:
            assert old[key].tobytes() == new[key].tobytes(), f"{name} {key} changed"
    head_before = _leaves(before.params, lambda key: "'fc'" in key)
    head_after = _leaves(after.params, lambda key: "'fc'" in key)
    assert any(not np.array_equal(head_before[k], head_after[k]) for k in head_before)


def test_fine_tuning_trains_the_backbone_and_updates_bn_statistics():
    before, after = train_a_few_steps(train_backbone=True)
    backbone = lambda key: "'video_backbone'" in key  # noqa: E731
    for tree in ("params", "batch_stats"):
        old, new = _leaves(getattr(before, tree), backbone), _leaves(getattr(after, tree), backbone)
        assert any(not np.array_equal(old[k], new[k]) for k in old), tree


# ---------------------------------------------------------------------------------------------
# Configs and folds
# ---------------------------------------------------------------------------------------------


def test_folds_are_the_datasets_fold_configs():
    assert [folds.fold_dataset("stica_hmdb51", k) for k in (1, 2, 3)] == [
        "stica_hmdb51/fold1",
        "stica_hmdb51/fold2",
        "stica_hmdb51/fold3",
    ]
    assert folds.fold_dataset("stica_ucf101/fold{fold}_short_side32", 2) == (
        "stica_ucf101/fold2_short_side32"
    )
    assert folds.fold_dataset("av_digits", 1) == "av_digits"
    with pytest.raises(finetune.ConfigError, match="folds 1..3; got fold 4") as error:
        folds.fold_dataset("stica_ucf101", 4)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "module",
    [finetune_hmdb51, finetune_ucf101, linear_hmdb51, linear_ucf101, demo_finetune, demo_linear],
)
def test_every_video_eval_config_validates_and_traces(module):
    config = module.get_config()
    finetune.validate_video_config(config, num_devices=8, num_processes=1)
    pretrained = nnx.eval_shape(lambda: build_model(config.model, None, rngs=nnx.Rngs(0)))
    i = config.input
    video = jax.ShapeDtypeStruct((2, i.num_frames, i.crop_size, i.crop_size, 3), jnp.float32)

    def logits(m, v):
        classifier = VideoClassifier(
            51,
            video_widths=tuple(config.model.video_widths),
            video_depths=tuple(config.model.video_depths),
            rngs=nnx.Rngs(0),
        )
        nnx.update(classifier.video_backbone, nnx.state(m.video_backbone))
        return classifier(v)

    assert nnx.eval_shape(logits, pretrained, video).shape == (2, 51)
    if module in (finetune_hmdb51, finetune_ucf101):
        # The official run_finetune.sh numbers (the config cites each).
        assert (i.num_frames, i.crop_size, i.eval_clips, i.eval_crops) == (32, 128, 10, 3)
        assert (config.num_epochs, config.global_batch_size, config.pooling) == (12, 32, "avg")


# ---------------------------------------------------------------------------------------------
# End to end on tiny AV-digits: the protocol, its results and a resume after a kill
# ---------------------------------------------------------------------------------------------


class Killed(Exception):
    pass


def run_killed_at_batch(n, config, workdir, monkeypatch):
    """Run the protocol into `workdir` until the `n`-th global batch, where it dies (`Killed`)."""
    real_global_batch = step_lib.global_batch
    calls = {"n": 0}

    def dying_global_batch(batch, mesh):
        calls["n"] += 1
        if calls["n"] == n:
            raise Killed
        return real_global_batch(batch, mesh)

    monkeypatch.setattr(step_lib, "global_batch", dying_global_batch)
    with pytest.raises(Killed):
        finetune.run_video_protocol(config, tiny_pretrained(), workdir=workdir)
    monkeypatch.setattr(step_lib, "global_batch", real_global_batch)


def digits_config(digits_dir, protocol="finetune"):
    config = tiny_finetune_config()
    config.protocol = protocol
    config.data_dir = digits_dir
    config.dataset = tiny_digits_name()
    return config


@pytest.fixture(scope="module")
def uninterrupted(digits_dir, tmp_path_factory):
    config = digits_config(digits_dir)
    workdir = str(tmp_path_factory.mktemp("finetune"))
    results = finetune.run_video_protocol(config, tiny_pretrained(), workdir=workdir, mesh=None)
    return config, workdir, results


@pytest.mark.slow
def test_finetuning_end_to_end_writes_results_and_a_killed_run_resumes_the_same_run(
    uninterrupted, tmp_path, monkeypatch, capsys
):
    config, workdir, results = uninterrupted
    assert results == results_lib.read_results(workdir)
    assert results["protocol"] == "finetune" and results["metrics"] == ["top1", "top5"]
    fold = results["folds"]["1"]
    details = json.load(open(os.path.join(workdir, "fold1", "result.json")))["details"]
    assert details["train_videos"] == 40 and details["test_videos"] == 12
    assert details["steps_per_epoch"] == 5 and set(details["epochs"]) == {"1", "2"}
    assert fold["top1"] == details["epochs"]["2"]["top1"]  # the headline is the last epoch
    best = max(details["epochs"].values(), key=lambda e: e["top1"])["top1"]
    assert fold["best_epoch_top1"] == best
    assert any(
        '"steps_per_sec"' in line for line in open(os.path.join(workdir, "fold1", "metrics.jsonl"))
    )

    # Kill a second run in epoch 2, after the checkpoint of epoch 1, and start it again.
    killed_dir = str(tmp_path / "killed")
    run_killed_at_batch(8, config, killed_dir, monkeypatch)
    assert os.listdir(os.path.join(killed_dir, "fold1", "checkpoints")) == ["5"]
    capsys.readouterr()
    resumed = finetune.run_video_protocol(config, tiny_pretrained(), workdir=killed_dir)
    assert "resuming from the checkpoint of step 5" in capsys.readouterr().out
    assert resumed["folds"] == results["folds"]  # the same run: same test scores every epoch
    again = json.load(open(os.path.join(killed_dir, "fold1", "result.json")))["details"]
    assert again["epochs"] == details["epochs"]


@pytest.mark.slow
def test_an_update_that_makes_the_state_non_finite_stops_the_fold_before_any_save(
    digits_dir, tmp_path, monkeypatch
):
    # One step per epoch, so every step ends an epoch and is saved: a non-finite state that
    # passed the check would be written. A first run is killed after its step-1 checkpoint.
    config = digits_config(digits_dir)
    config.global_batch_size = 40  # the 40 training videos, one clip each
    config.eval_from_epoch = 2  # no test after epoch 1: the second batch is step 2's
    workdir = str(tmp_path / "run")
    run_killed_at_batch(2, config, workdir, monkeypatch)
    checkpoints = os.path.join(workdir, "fold1", "checkpoints")
    assert os.listdir(checkpoints) == ["1"]

    # Resumed with a learning rate past float32's range: the loss and gradient of step 2 are
    # computed from finite parameters, and the update overflows them.
    for group in ("head_lr", "backbone_lr", "pooling_lr"):
        config.optimizer[group] = 1e39
    with pytest.raises(NonFiniteError) as error:
        finetune.run_video_protocol(config, tiny_pretrained(), workdir=workdir)
    message = str(error.value)
    assert re.fullmatch(
        r"fold 1 epoch 2/\d+ step 2: the update made the parameters, BatchNorm statistics or optimizer "
        r"state non-finite \(loss=\S+, grad_norm=\S+\); stopping without saving it\. "
        r"The last checkpoint, step 1, is finite\.",
        message,
    ), message
    loss, grad_norm = re.search(r"loss=(\S+), grad_norm=(\S+)\)", message).groups()
    assert np.isfinite(float(loss)) and np.isfinite(float(grad_norm))
    assert os.listdir(checkpoints) == ["1"]


def _official_best_epoch(evaluations):
    """GDT eval_video.py's selection, as written there: `if vid_acc1 > best_vid_acc_1`."""
    best_acc, best_epoch = -1, 0
    for epoch in sorted(evaluations):
        if evaluations[epoch]["top1"] > best_acc:
            best_acc, best_epoch = evaluations[epoch]["top1"], epoch
    return best_epoch


@pytest.mark.parametrize("seed", range(20))
def test_the_best_test_epoch_is_the_first_of_the_highest_as_the_official_loop_keeps_it(seed):
    rng = np.random.default_rng(seed)
    epochs = rng.choice(np.arange(1, 40), size=rng.integers(1, 12), replace=False)
    # Scores on a coarse grid, so that ties between epochs are common.
    evaluations = {
        int(e): {"top1": float(rng.integers(0, 5)) * 10.0, "top5": 99.0}
        for e in rng.permutation(epochs)  # in no particular order, as read from JSON
    }
    assert finetune.best_test_epoch(evaluations) == _official_best_epoch(evaluations)


def test_a_tie_keeps_the_earlier_epoch():
    evaluations = {9: {"top1": 70.0}, 3: {"top1": 70.0}, 5: {"top1": 60.0}, 12: {"top1": 69.9}}
    assert finetune.best_test_epoch(evaluations) == 3
