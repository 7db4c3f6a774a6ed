"""The audio classification protocol (seed §7.1): folds, pooling, the classifier, end to end."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from configs.eval import audio_dcase2014, audio_esc50
from stica_jax.evaluate import audio, results as results_lib
from stica_jax.evaluate.folds import fold_seed, parse_folds
from stica_jax.evaluate.metrics import topk_accuracy
from stica_jax.models.stica import build_model
from tests.evaluate.conftest import esc50_rows
from tests.tiny import tiny_config, tiny_model


def test_esc50_fold_k_tests_on_fold_k_and_trains_on_the_other_four(esc50_dir):
    from data_pipeline.datasets import load_builder

    builder = load_builder("stica_esc50", esc50_dir)
    rows = esc50_rows()

    def ids(splits):
        dataset = builder.as_dataset("+".join(splits))
        return sorted(os.path.basename(e["id"].decode()) for e in tfds.as_numpy(dataset))

    for fold in range(1, 6):
        train, test = audio.protocol_splits("stica_esc50", fold)
        assert ids([test]) == sorted(r["filename"] for r in rows if r["fold"] == str(fold))
        assert ids(train) == sorted(r["filename"] for r in rows if r["fold"] != str(fold))
    assert audio.protocol_splits("stica_dcase2014", 1) == (["train"], "test")


@pytest.mark.parametrize(
    "dataset,fold,message",
    [("stica_esc50", 6, "folds 1..5; got fold 6"), ("stica_dcase2014", 2, "folds 1..1")],
)
def test_a_fold_the_dataset_lacks_is_one_clear_line(dataset, fold, message):
    from stica_jax.train import ConfigError

    with pytest.raises(ConfigError, match=message) as error:
        audio.protocol_splits(dataset, fold)
    assert "\n" not in str(error.value)


def test_pooling_is_torch_max_pool_1x3_stride_1x2_flattened_in_cfT_order():
    torch = pytest.importorskip("torch")
    amap = np.random.default_rng(0).standard_normal((2, 3, 9, 4)).astype(np.float32)  # B F T C
    got = np.asarray(audio.pool_and_flatten(amap))
    # The official layout: [B, C, F, T], kernel (1, 3) over (F, T), stride (1, 2), no padding.
    want = torch.nn.functional.max_pool2d(
        torch.from_numpy(amap).permute(0, 3, 1, 2), kernel_size=(1, 3), stride=(1, 2)
    ).flatten(1)
    assert got.shape == (2, 4 * 3 * 4)  # (9 - 3) // 2 + 1 = 4 time steps
    np.testing.assert_array_equal(got, want.numpy())
    # And by hand: output time step j is the max over input steps 2j, 2j + 1, 2j + 2.
    by_hand = np.stack([amap[:, :, 2 * j : 2 * j + 3].max(axis=2) for j in range(4)], axis=2)
    np.testing.assert_array_equal(got, by_hand.transpose(0, 3, 1, 2).reshape(2, -1))


def test_a_clip_scores_the_mean_of_its_subclips_logits():
    rng = np.random.default_rng(1)
    params = {"w": rng.standard_normal((5, 3)), "b": rng.standard_normal(3)}
    features = rng.standard_normal((4, 6, 5))  # 4 clips × 6 sub-clips × 5 features
    want = np.array(
        [np.mean([f @ params["w"] + params["b"] for f in clip], axis=0) for clip in features]
    )
    np.testing.assert_allclose(audio.clip_scores(params, features), want, rtol=1e-12)
    labels = np.argmax(want, axis=1)
    labels[0] = (labels[0] + 1) % 3
    assert topk_accuracy(want, labels, 1) == 75.0


def test_the_classifier_learns_a_separable_problem():
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((3, 20)) * 3
    labels = np.repeat(np.arange(3), 40)
    features = centres[labels] + rng.standard_normal((120, 20))
    params, loss = audio.train_linear_classifier(
        features[::2],
        labels[::2],
        num_classes=3,
        epochs=60,
        batch_size=16,
        learning_rate=1e-2,
        weight_decay=5e-4,
        seed=0,
    )
    scores = audio.clip_scores(params, features[1::2, None])
    assert topk_accuracy(scores, labels[1::2], 1) == 100.0
    assert loss < 0.05


def test_the_optimizer_is_torch_adam_with_coupled_weight_decay():
    """One full batch per epoch: each epoch is one torch `Adam(weight_decay=...)` step."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    y = rng.integers(0, 4, 32)
    initial = {"w": rng.standard_normal((6, 4)).astype(np.float32), "b": np.ones(4, np.float32)}
    params, _ = audio.train_linear_classifier(
        x,
        y,
        num_classes=4,
        epochs=5,
        batch_size=64,
        learning_rate=0.1,
        weight_decay=0.3,
        seed=0,
        initial=initial,
    )

    def torch_run(optimizer_class):
        layer = torch.nn.Linear(6, 4)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(initial["w"].T))
            layer.bias.copy_(torch.from_numpy(initial["b"]))
        optimizer = optimizer_class(layer.parameters(), lr=0.1, weight_decay=0.3)
        for _ in range(5):
            optimizer.zero_grad()
            logits = layer(torch.from_numpy(x))
            torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)).backward()
            optimizer.step()
        return layer.weight.detach().numpy().T, layer.bias.detach().numpy()

    # float32 rounding differs between the two (Adam divides by small second moments).
    w, b = torch_run(torch.optim.Adam)
    np.testing.assert_allclose(params["w"], w, atol=2e-5)
    np.testing.assert_allclose(params["b"], b, atol=2e-5)
    w_decoupled, _ = torch_run(torch.optim.AdamW)  # what the test must tell apart
    assert np.abs(w_decoupled - w).max() > 100 * 2e-5


def test_the_eval_configs_cite_the_seed_protocol():
    esc, dcase = audio_esc50.get_config(), audio_dcase2014.get_config()
    assert (esc.dataset, parse_folds(esc.folds)) == ("stica_esc50", [1, 2, 3, 4, 5])
    assert (esc.audio.subclips, esc.audio.seconds, dcase.audio.subclips, dcase.audio.seconds) == (
        10,
        2.0,
        60,
        1.0,
    )
    assert (dcase.dataset, parse_folds(dcase.folds)) == ("stica_dcase2014", [1])
    for config in (esc, dcase):
        assert config.protocol == "audio"
        assert (config.audio.batch_size, config.audio.learning_rate) == (512, 1e-4)
        assert config.audio.weight_decay == 5e-4
        # The SOTA audio map of a sub-clip: 9 × 7 for 2 s (spec §2) and 9 × 4 for 1 s; pooled
        # over time it gives 9 × 3 × 512 and 9 × 1 × 512 features.
        model = nnx.eval_shape(lambda c=config: build_model(c.model, None, rngs=nnx.Rngs(0)))
        frames = 1 + (round(config.audio.seconds * 24000) - 480) // 240
        spec = jax.ShapeDtypeStruct((1, 257, frames, 1), np.float32)
        pooled = nnx.eval_shape(lambda m, s: audio.pool_and_flatten(m.audio_map(s)), model, spec)
        assert pooled.shape == (1, 512 * 9 * (3 if config.audio.seconds == 2.0 else 1))


def tiny_eval_config(data_dir: str) -> ml_collections.ConfigDict:
    """`audio_esc50.py` at the tiny model's input, 3 × 1-s sub-clips, a fast classifier."""
    config = audio_esc50.get_config()
    config.data_dir = data_dir
    config.input = tiny_config().input
    config.audio.subclips, config.audio.seconds = 3, 1.0
    config.audio.learning_rate, config.audio.epochs = 3e-2, 150
    config.audio.extract_batch_size = 8
    return config


@pytest.fixture(scope="module")
def esc50_run(esc50_dir, tmp_path_factory):
    config = tiny_eval_config(esc50_dir)
    workdir = str(tmp_path_factory.mktemp("audio_eval"))
    model = tiny_model()
    model.eval()
    results = audio.run_audio_protocol(
        config, model, workdir=workdir, data_dir=esc50_dir, init=audio.init_info(config, 7)
    )
    return config, model, workdir, results


@pytest.mark.slow
def test_esc50_end_to_end_learns_every_fold_and_never_sees_its_test_fold(esc50_run, capsys):
    config, _, workdir, results = esc50_run
    assert results == results_lib.read_results(workdir)
    assert results["protocol"] == "audio" and results["dataset"] == "esc50"
    assert results["init"] == {"kind": "random", "source": "", "step": 7}
    assert results["metrics"] == ["top1"]
    # Classes 0 and 1 (low / high tone) are learned from the four training folds; the held-out
    # fold's marker class never appears in training (it would, were the test fold leaked in).
    assert {k: f["top1"] for k, f in results["folds"].items()} == {
        str(k): pytest.approx(200 / 3) for k in range(1, 6)
    }
    assert results["mean"]["top1"] == pytest.approx(200 / 3)
    assert results["std"]["top1"] == pytest.approx(0.0, abs=1e-9)
    fold3 = json.load(open(os.path.join(workdir, "fold3", "result.json")))
    assert fold3["details"]["train_clips"] == 12 and fold3["details"]["test_clips"] == 3
    assert fold3["details"]["train_splits"] == ["fold1", "fold2", "fold4", "fold5"]
    assert results["config"]["audio"]["subclips"] == 3


@pytest.mark.slow
def test_a_restarted_run_skips_finished_folds_and_redoes_the_rest(esc50_run, monkeypatch):
    config, model, workdir, first = esc50_run
    os.remove(os.path.join(workdir, "fold2", "result.json"))
    os.remove(os.path.join(workdir, results_lib.RESULTS_FILE))
    trained = []
    train = audio.train_linear_classifier

    def counting(*args, **kwargs):
        trained.append(kwargs["seed"])
        return train(*args, **kwargs)

    monkeypatch.setattr(audio, "train_linear_classifier", counting)
    again = audio.run_audio_protocol(
        config, model, workdir=workdir, data_dir=config.data_dir, init=audio.init_info(config, 7)
    )
    assert trained == [fold_seed(config.seed, 2)]
    assert again == first  # the redone fold gives the same figure (seeded)


def test_wrong_architecture_and_missing_dataset_are_one_clear_line(tmp_path):
    from data_pipeline.datasets import DatasetNotPreparedError
    from stica_jax.models import build_train_model
    from stica_jax.train import ConfigError
    from tests.tiny import tiny_supervised_config

    config = tiny_eval_config(str(tmp_path))
    # Shapes only: both errors come before any parameter is read.
    classifier = nnx.eval_shape(
        lambda: build_train_model(tiny_supervised_config(), rngs=nnx.Rngs(0))
    )
    with pytest.raises(ConfigError, match="needs a model with an audio tower") as error:
        audio.run_audio_protocol(config, classifier, workdir=str(tmp_path), data_dir=str(tmp_path))
    assert "\n" not in str(error.value)
    with pytest.raises(
        DatasetNotPreparedError,
        match=r"'stica_esc50' is not prepared .*python -m stica_jax.prepare esc50",
    ) as error:
        audio.run_audio_protocol(
            config, nnx.eval_shape(tiny_model), workdir=str(tmp_path), data_dir=str(tmp_path)
        )
    assert "\n" not in str(error.value)
    config.input.audio_frontend = "mfcc"  # not a front end the pipeline has
    with pytest.raises(
        ConfigError, match=r"unknown input.audio_frontend 'mfcc'; expected one of"
    ) as error:
        audio.run_audio_protocol(
            config, nnx.eval_shape(tiny_model), workdir=str(tmp_path), data_dir=str(tmp_path)
        )
    assert "\n" not in str(error.value)
