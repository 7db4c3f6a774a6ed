"""VideoClassifier ↔ torchvision r2plus1d_18 with its fc (e.g. torchvision's Kinetics weights)."""

import logging

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
from safetensors.torch import load_file as torch_load_file
from torchvision.models.video import r2plus1d_18

from configs import sota
from stica_jax.export import torch as export, torch_modules
from stica_jax.models.classifier import VideoClassifier
from stica_jax.models.stica import build_model
from tests.export.random_norms import flat_values, randomize_norms

TOL = 1e-4


@pytest.fixture(scope="module")
def classifier():
    model = VideoClassifier(400, pooling="avg", rngs=nnx.Rngs(3))
    randomize_norms(model, seed=4)
    model.eval()
    return model


@pytest.fixture(scope="module")
def clip():
    """A short, small clip: the fc mapping does not need a full 16×112×112 input."""
    return np.random.default_rng(5).standard_normal((2, 8, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def torchvision_net(classifier, tmp_path_factory):
    out = tmp_path_factory.mktemp("classifier")
    manifest = export.export_model(classifier, None, out, step=0)
    assert manifest["architecture"]["video_backbone"]["has_fc"]
    assert export.HEADS_FILE not in manifest["files"]  # avg pooling: nothing beyond torchvision
    net = r2plus1d_18(num_classes=400)
    net.load_state_dict(torch_load_file(out / export.VIDEO_FILE), strict=True)
    return net.eval()


# Jitted: op by op, each of the network's ops would be a compile of its own.
_apply = nnx.jit(lambda model, x: model(x))


def logits(net, clip):
    with torch.no_grad():
        return net(torch.from_numpy(clip).permute(0, 4, 1, 2, 3)).numpy()


def test_classifier_logits_match_torchvision_r2plus1d18(classifier, torchvision_net, clip):
    want = np.asarray(_apply(classifier, jnp.asarray(clip)))
    diff = float(np.max(np.abs(want - logits(torchvision_net, clip))))
    print(f"classifier logits: max |jax - torch| = {diff:.3g}")
    assert diff < TOL


def test_torchvision_pth_imports_as_classifier(classifier, torchvision_net, clip, tmp_path):
    torch.save(torchvision_net.state_dict(), tmp_path / "r2plus1d_18.pth")
    model = export.load_torchvision_r2plus1d18(tmp_path / "r2plus1d_18.pth")
    assert isinstance(model, VideoClassifier)
    want, got = flat_values(classifier), flat_values(model)
    assert want.keys() == got.keys()
    for path in want:
        np.testing.assert_array_equal(got[path], want[path], err_msg=str(path))


def test_fc_is_dropped_and_reported_for_the_stica_backbone(torchvision_net, tmp_path, caplog):
    torch.save(torchvision_net.state_dict(), tmp_path / "k400.pth")
    config = sota.get_config()
    model = nnx.eval_shape(lambda: build_model(config.model, None, rngs=nnx.Rngs(0)))
    with caplog.at_level(logging.WARNING):
        export.load_torchvision_r2plus1d18(tmp_path / "k400.pth", model)
    assert "dropped fc.weight, fc.bias" in caplog.text
    np.testing.assert_array_equal(
        np.asarray(model.video_backbone.stem.bn1.var.get_value()),
        torchvision_net.stem[1].running_var.numpy(),
    )


def test_fc_of_another_size_keeps_its_initialisation(torchvision_net, tmp_path, caplog):
    torch.save(torchvision_net.state_dict(), tmp_path / "k400.pth")
    model = VideoClassifier(51, rngs=nnx.Rngs(6))
    fc_before = np.asarray(model.fc.kernel.get_value())
    with caplog.at_level(logging.WARNING):
        export.load_torchvision_r2plus1d18(tmp_path / "k400.pth", model)
    assert (
        "fc not loaded" in caplog.text
        and "fc.weight [400, 512] (expected [51, 512])" in caplog.text
    )
    np.testing.assert_array_equal(np.asarray(model.fc.kernel.get_value()), fc_before)
    np.testing.assert_array_equal(
        np.asarray(model.video_backbone.layers[0][0].conv1.spatial.kernel.get_value()),
        torchvision_net.layer1[0].conv1[0][0].weight.detach().numpy().transpose(2, 3, 4, 1, 0),
    )


def test_transformer_classifier_round_trips_through_pytorch_modules(clip, tmp_path):
    model = VideoClassifier(
        10,
        pooling="transformer",
        transformer=dict(num_layers=1, mlp_width=64, max_len=8),
        rngs=nnx.Rngs(8),
    )
    randomize_norms(model, seed=9)
    model.eval()
    manifest = export.export_model(model, None, tmp_path, step=5)
    assert not manifest["architecture"]["video_backbone"]["has_fc"]
    assert {"fc.weight", "fc.bias"} <= set(manifest["files"][export.HEADS_FILE])
    net = torch_modules.load_export(tmp_path)
    diff = float(np.max(np.abs(np.asarray(_apply(model, jnp.asarray(clip))) - logits(net, clip))))
    print(f"transformer classifier logits: max |jax - torch| = {diff:.3g}")
    assert diff < TOL
    fresh = nnx.eval_shape(
        lambda: VideoClassifier(
            10,
            pooling="transformer",
            transformer=dict(num_layers=1, mlp_width=64, max_len=8),
            rngs=nnx.Rngs(0),
        )
    )
    export.import_model(tmp_path, fresh)
    want, got = flat_values(model), flat_values(fresh)
    for path in want:
        np.testing.assert_array_equal(got[path], want[path], err_msg=str(path))


def test_supervised_config_exports_its_transformer_classifier(tmp_path):
    """`--config=configs/supervised_k400_crops.py` exports the classifier that config trains."""
    from configs import supervised_k400_crops

    manifest = export.export_from_config(supervised_k400_crops.get_config(), tmp_path)
    arch = manifest["architecture"]
    assert (
        arch["model_type"] == "video_classifier" and arch["video_pooling"]["kind"] == "transformer"
    )
    assert arch["fc"] == {"in_features": 512, "out_features": 400}
    assert not arch["video_backbone"]["has_fc"]  # fc follows the transformer: in the heads file
    assert {"fc.weight", "fc.bias"} <= set(manifest["files"][export.HEADS_FILE])
