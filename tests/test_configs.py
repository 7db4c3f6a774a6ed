"""What the configs mean, derived from the networks they build (`jax.eval_shape`), not copied.

The paper's crop sizes are stated for the 30-frame map (T'=4, seed §6.1.1: "space 2×6² + 4×4²
& time 2×3 + 1×2"); spec §5 scales the temporal ones with T' (3T'/4 large, T'/2 small).
"""

import importlib

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from stica_jax import config_checks
from stica_jax.models.audio_resnet import AudioResNet
from stica_jax.shapes import input_shapes

PAPER_CONFIGS = ["sota", "ablation_avg_pool", "ablation_no_crops", "ablation_30_frames"]


def _config(name):
    return importlib.import_module(f"configs.{name}").get_config()


def _audio_map_shape(config):
    _, audio_shape = input_shapes(config.input)
    model = nnx.eval_shape(lambda: AudioResNet(config.model.audio_widths, rngs=nnx.Rngs(0)))
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(audio_shape, jnp.float32))
    return audio_shape, out.shape


@pytest.mark.parametrize("name, seconds, t_map", [("sota", 2, 8), ("ablation_30_frames", 1, 4)])
def test_the_crops_fit_the_map_of_the_configs_own_input(name, seconds, t_map):
    config = _config(name)
    assert config.input.num_frames == 30 * seconds  # 30 fps (seed §6.1)
    t, h, w = config_checks.video_map_shape(config)  # traced through the R(2+1)D-18 it builds
    assert (t, h, w) == (t_map, 7, 7)  # seed §6.1: T = 4 for 30 frames, 8 for 60; 7×7 at 112²
    c = config.crops
    # Space: the seed's 6² and 4² of a 7×7 map (a large crop leaves one row and column out).
    assert (c.space_large, c.space_small) == (h - 1, h - 3) == (6, 4)
    # Time: the seed's 3 and 2 steps of T'=4, scaled with the map (spec §5).
    assert (c.time_large, c.time_small) == (3 * t // 4, t // 2)
    assert (c.n_space_large, c.n_space_small, c.n_time_large, c.n_time_small) == (2, 4, 2, 1)
    config_checks.validate_config(config, num_devices=8, num_processes=1)


@pytest.mark.parametrize("name, frames", [("sota", 199), ("ablation_30_frames", 99)])
def test_the_audio_input_is_the_papers_spectrogram(name, frames):
    config = _config(name)
    audio_shape, map_shape = _audio_map_shape(config)
    assert audio_shape[1:] == (257, frames, 1)  # seed §6.1: "257×199" for 2 s (spec §7)
    if frames == 199:
        assert map_shape[1:3] == (9, 7)  # spec §2: ResNet-9's map of a 257×199 input


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_reproduce_the_official_training(name):
    """Official pairing, detached keys and logfbank features (spec §6, §7)."""
    config = _config(name)
    assert config.loss.crop_pairs == "official"
    assert config.loss.detach_keys is True
    assert config.input.audio_frontend == "official"


def test_the_attached_keys_ablation_differs_from_sota_only_in_the_keys():
    sota, ablation = _config("sota").to_dict(), _config("ablation_attached_keys").to_dict()
    assert ablation["loss"].pop("detach_keys") is False and sota["loss"].pop("detach_keys") is True
    assert ablation == sota


def test_the_config_checks_load_no_tensorflow():
    """`python -m stica_jax.main` and `python -m stica_jax.ablate` check the config before
    TensorFlow and the trainer load, so a value that cannot run is one line in seconds
    (tests/test_reliability.py and tests/test_ablate.py run them): the checks import neither."""
    import subprocess
    import sys

    from tests.command_line import ROOT

    code = (
        "import sys; import stica_jax.config_checks, stica_jax.ablation; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tensorflow', 'tensorflow_datasets', 'clu', 'orbax'}), 'stica_jax.train' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[] False"
