"""Training: config checks, every config traces, real steps on AV-digits, the demo's table."""

import glob
import importlib.util
import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from stica_jax import config_checks, data, step as step_lib, train
from stica_jax.shapes import train_batch_shapes

CONFIG_FILES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py")))


def load_config(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def tiny_demo_config(data_dir: str):
    from tests import tiny_demo_config

    config = tiny_demo_config.get_config()
    config.data_dir = data_dir
    return config


@pytest.mark.slow
def test_every_config_loads_validates_and_traces():
    assert {os.path.basename(p) for p in CONFIG_FILES} >= {
        "sota.py",
        "demo.py",
        "supervised_k400.py",
        "supervised_k400_crops.py",
    }
    for path in CONFIG_FILES:
        config = load_config(path)
        config_checks.validate_config(config, num_devices=8, num_processes=1)
        model, optimizer, state = train.create_train_state(config, abstract=True)
        mesh = step_lib.make_mesh()
        train_step = step_lib.make_train_step(
            nnx.graphdef(model), optimizer, step_lib.loss_config_for(config), mesh
        )
        batch = {
            k: jax.ShapeDtypeStruct(shape, dtype)
            for k, (shape, dtype) in train_batch_shapes(config, 8).items()
        }
        new_state, metrics = jax.eval_shape(train_step, state, batch, jax.random.key(0))
        assert jax.tree.map(lambda x: x.shape, new_state.params) == jax.tree.map(
            lambda x: x.shape, state.params
        ), path
        assert metrics["loss"].shape == (), path


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda c: setattr(c, "global_batch_size", 12),
            "global_batch_size=12 is not divisible by the 8 devices",
        ),
        (
            lambda c: setattr(c.input, "crop_size", 64),
            r"crops do not fit the input \(60, 64, 64\): large spatial crop 6×6 is larger than the 4×4",
        ),
        (
            lambda c: setattr(c.input, "num_frames", 16),
            "large temporal crop of 6 steps is longer than the feature map's T'=2",
        ),
        (lambda c: setattr(c.model, "pooling", "max"), "unknown model.pooling 'max'"),
        (
            lambda c: setattr(c.eval, "method", "svm"),
            "unknown eval.method 'svm' for mode 'pretrain'",
        ),
        (
            lambda c: setattr(c, "mode", "finetune"),
            "unknown mode 'finetune'; expected 'pretrain' or 'supervised'",
        ),
        (
            lambda c: setattr(c, "mode", "supervised"),
            "mode 'supervised' needs a config.supervised section",
        ),
        (
            lambda c: setattr(c.loss, "crop_pairs", "every"),
            r"unknown loss.crop_pairs 'every'; expected one of \['official', 'all'\]",
        ),
        (
            lambda c: setattr(c.input, "audio_frontend", "librosa"),
            r"unknown input.audio_frontend 'librosa'; expected one of \['stica', 'official'\]",
        ),
        (
            lambda c: setattr(c.performance, "bn_sync", "group"),
            r"unknown performance.bn_sync 'group'; expected one of \['global', 'device'\]",
        ),
        (
            lambda c: setattr(c.performance, "conv_channel_multiple", -8),
            "performance.conv_channel_multiple=-8 must be >= 0",
        ),
        (lambda c: setattr(c, "global_batch_size", 0), "global_batch_size=0 must be positive"),
        (
            lambda c: setattr(c, "checkpoint_every_steps", 0),
            "checkpoint_every_steps=0 must be at least 1",
        ),
        (lambda c: setattr(c, "log_every_steps", 0), "log_every_steps=0 must be at least 1"),
        (lambda c: setattr(c, "keep_checkpoints", 0), "keep_checkpoints=0 must be at least 1"),
        (lambda c: setattr(c, "num_epochs", -1), r"num_epochs=-1.0 must be 0 or more"),
    ],
)
def test_config_errors_are_one_clear_line(change, message):
    from configs import sota

    config = sota.get_config()
    change(config)
    with pytest.raises(train.ConfigError, match=message) as e:
        config_checks.validate_config(config, num_devices=8, num_processes=1)
    assert "\n" not in str(e.value)


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
    from configs import sota

    config = sota.get_config()
    config.data_dir = str(tmp_path)
    with pytest.raises(
        data.DatasetNotPreparedError,
        match=(
            rf"^dataset 'stica_kinetics400' is not prepared under {tmp_path}; prepare it with: "
            rf"python -m stica_jax.prepare kinetics400 --manual_dir=\S+ --data_dir={tmp_path}$"
        ),
    ):
        data.open_run_dataset(config, config.input.dataset)


@pytest.fixture(scope="module")
def demo_run(trained, tmp_path_factory):
    """The tiny demo: its 12 steps are the session's `trained` run (a subprocess on 4 devices,
    tests/tiny_runs.py), finished here in-process on a copy of that workdir with the demo's
    online evaluation. Training is complete, so this run restores step 12 and computes the
    final probe table: the code path that ends an uninterrupted run, without training the same
    12 steps a second time."""
    data_dir, trained_workdir = trained
    workdir = str(tmp_path_factory.mktemp("demo") / "work")
    shutil.copytree(trained_workdir, workdir)
    config = tiny_demo_config(data_dir)
    summary = train.train_and_evaluate(config, workdir)
    return config, workdir, summary


@pytest.mark.slow
def test_demo_in_reduced_form_trains_and_reports_the_probe_table(demo_run):
    config, workdir, summary = demo_run
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    history = [h for h in lines if "loss" in h]
    assert [h["step"] for h in history] == list(range(1, 13))
    trained = summary["probe"]["trained"]
    assert lines[-1] == {
        "step": 12,
        "eval/linear_probe_video_top1": trained["video"],
        "eval/linear_probe_audio_top1": trained["audio"],
    }
    losses = [h["loss"] for h in history]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # real steps on real data drop the loss
    for key in ("loss_av", "loss_crops", "learning_rate", "grad_norm", "clips_per_sec"):
        assert key in history[-1]
    table = summary["probe"]
    assert set(table) == {"trained", "random init"}
    for accs in table.values():
        assert set(accs) == {"video", "audio"}
    # The probe read the trained weights, not the init: a model left at its init would give the
    # random-init row exactly. Whether 12 steps *beat* random init is not asserted: at this size
    # (24 test clips, 4.2 points a clip) the gain is noise. Best gain of the two modalities,
    # measured on this CPU: 48/24 clips, 12 steps: 12.5 (seed 0; 37.5 on the CPU where an
    # earlier 12.5-point margin was set, which then failed here); 96/48 clips, 48 steps: -2.1 to
    # 25.0 over 3 seeds (head dropout 0.3), 0.0 to 16.7 over 4 seeds (dropout 0); 192/96 clips,
    # 144 steps: 1.0 and 5.2 (2 seeds). The margin is the full demo's (configs/demo.py: +32
    # to +51 / +21 to +29 over 3 seeds and a second device count, docs/demo.md), which CI cannot
    # afford.
    assert table["trained"] != table["random init"], table
    assert max(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))) == 12
    assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))  # TensorBoard
    # The trained row, recomputed from the restored step 12 without the probe's code: each
    # example's feature is its backbone's last map averaged over time and space (float64 here),
    # then over the example's views; scikit-learn's logistic regression (L2, C = 1) on features
    # standardised with the training split's statistics scores it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from stica_jax import restore
    from tests.tiny import eval_outputs

    saved, model, step_ = restore.restore_model(workdir)
    assert step_ == 12
    model.eval()
    maps = {
        "video": nnx.jit(lambda model, x: model.video_map(x)),
        "audio": nnx.jit(lambda model, x: model.audio_map(x)),
    }

    def features(modality, split):
        fmaps, labels = eval_outputs(saved, modality, split, lambda x: maps[modality](model, x))
        return fmaps.mean(axis=tuple(range(1, fmaps.ndim - 1))), labels

    for modality in ("video", "audio"):
        (train_x, train_y), (test_x, test_y) = (
            features(modality, split) for split in (saved.eval.train_split, saved.eval.test_split)
        )
        assert (len(train_y), len(test_y)) == (48, 24)
        scaler = StandardScaler().fit(train_x)
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(train_x), train_y)
        top1 = 100.0 * np.mean(clf.predict(scaler.transform(test_x)) == test_y)
        # One clip (4.2 points) of slack: float32 against float64 feature sums may move a
        # prediction that sits on a decision boundary.
        assert abs(top1 - trained[modality]) <= 100.0 / 24 + 1e-6, (modality, top1, trained)
