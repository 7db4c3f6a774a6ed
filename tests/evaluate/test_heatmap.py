"""Audio-visual heatmaps (seed §7.4): geometry on AV-digits, the command line, its errors."""

import os
import pathlib
import stat
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from data_pipeline import av_digits
from data_pipeline.media_decode import encode_jpeg
from stica_jax.evaluate import heatmap
from tests.command_line import newcomer_dirs, run_fresh, users_xla_flags
from tests.evaluate import digit_clips

REPO = pathlib.Path(__file__).resolve().parents[2]
CELL = 8  # pixels per map cell of the brightness model


class BrightnessModel(nnx.Module):
    """A stand-in STiCA whose map cell is the mean brightness of its 8 × 8 pixels and whose
    audio embedding points at "bright": its heat peaks where the picture is brightest."""

    def __init__(self):
        self.gain = nnx.Param(jnp.ones(()))

    def video_map(self, video):
        b, t, h, w, _ = video.shape
        cells = video.mean(-1).reshape(b, t, h // CELL, CELL, w // CELL, CELL).mean((3, 5))
        return self.gain * cells[..., None]

    def embed_video_map(self, fmap, keys):
        v = fmap.mean((1, 2, 3))  # [N, 1]: what a 1 × 1 crop pooled over time holds
        z = jnp.concatenate([v, jnp.ones_like(v)], axis=-1)
        return z / jnp.linalg.norm(z, axis=-1, keepdims=True)

    def embed_audio(self, audio, keys):
        return jnp.tile(jnp.array([[1.0, 0.0]]), (audio.shape[0], 1))


def demo_input(**changes) -> dict:
    from configs import demo

    return dict(demo.get_config().input.to_dict(), **changes)


def test_the_heat_peaks_inside_the_digit_on_av_digits_with_a_brightness_model():
    """Sampling, the map-to-frame geometry and the overlay put the heat where the digit is
    (bright on dark, spec §12), clip after clip at random positions: a flipped axis, a
    transposed map or the wrong frame would miss the box."""
    spec = av_digits.AvDigitsSpec(frame_size=64, digit_scale=(0.3, 0.35), speed=(0.0, 0.0))
    model = BrightnessModel()
    input_config = demo_input()
    hits, centres = 0, []
    for seed in range(6):
        frames, audio, boxes, _ = digit_clips.render(seed, spec)
        inputs = heatmap.clip_inputs(
            [encode_jpeg(f) for f in frames], audio, input_config, short_side=64
        )
        heat = heatmap.heatmap(model, inputs)
        assert heat.shape == (64 // CELL, 64 // CELL)
        # The displayed frame is the clip's middle frame.
        span = (input_config["num_frames"] - 1) * input_config["frame_stride"] + 1
        assert inputs.middle == (len(frames) - span) // 2 + span // 2
        np.testing.assert_allclose(inputs.frame, frames[inputs.middle], atol=40)  # JPEG
        up = heatmap.upsample(heat, 64, 64)
        y, x = np.unravel_index(np.argmax(up), up.shape)
        top, left, bottom, right = boxes[inputs.middle]
        hits += top <= y < bottom and left <= x < right
        centres.append(((top + bottom) / 2, (left + right) / 2))
        png = heatmap.overlay(inputs.frame, heat)
        assert png.shape == frames[0].shape and png.dtype == np.uint8
    assert hits == 6
    assert np.ptp(np.array(centres), axis=0).min() > 10  # the digits were spread over the frame


def test_the_localisation_benchmark_scores_a_hit_on_the_cell_of_the_digit():
    """`benchmarks/heatmap_localisation.py`'s hit: the map cell of the heat's maximum overlaps the
    digit's box. The brightness stand-in peaks on the digit's ink whatever the sound, so it hits
    on every clip with its own and a swapped sound alike; a transposed or flipped cell index
    would miss often (chance is the box's share of the 8 × 8 cells)."""
    from benchmarks import heatmap_localisation

    spec = av_digits.AvDigitsSpec(frame_size=64, digit_scale=(0.3, 0.35), seconds=1.5)
    rates = heatmap_localisation.measure(BrightnessModel(), demo_input(), spec, clips=12)
    assert rates["centre_chance"] == 1 / 64 and rates["box_chance"] < 0.2
    assert rates["box_own"] == rates["box_swapped"] == 1.0
    assert rates["centre_own"] == rates["centre_swapped"] > 3 * rates["centre_chance"]


# Held-out AV-digits as tests/localisation_config.py trains on them (32² frames, no distractor
# tones): two side by side are a 32 × 64 picture, a 2 × 4 map for the demo's networks.
TWO_SOURCES = av_digits.AvDigitsSpec(frame_size=32, seconds=1.5, distractor_tones=0)


def test_a_heat_blind_to_the_sound_scores_the_sounding_and_the_silent_digit_alike():
    """`measure_two_sources` scores every picture with both digits' sounds, so a heat that ignores
    the sound (here: brightness, peaking on a digit's ink) is on the sounding digit exactly as
    often as on the silent one, whatever the pictures: its chance level is built in."""
    from benchmarks import heatmap_localisation

    rates = heatmap_localisation.measure_two_sources(
        BrightnessModel(), demo_input(), TWO_SOURCES, pairs=8
    )
    assert rates["sounding"] == rates["silent"]
    assert rates["sounding"] + rates["silent"] == 1.0  # always on one of the two digits
    assert 0.2 < rates["chance"] < 0.5  # a box's cells of the 4 × 8 map


@pytest.mark.slow
def test_a_trained_model_hears_which_of_two_digits_sounds(tmp_path):
    """Seed §7.4 on AV-digits: the heat of a model pretrained by `python -m stica_jax.main`
    peaks on the digit whose sound plays, not on the other digit in the picture.

    tests/localisation_config.py trains the demo's networks for 370 steps (~3.5 minutes on 2 cores) on
    single-digit clips. The test pictures are two held-out clips side by side, each scored
    with either clip's sound: a heat blind to the sound (saliency, a bright digit) scores 0.5
    on the sounding digit (the test above). Measured here over 30 pictures × 2 sounds:
    0.83-0.88 over 3 seeds, random init 0.43-0.52 (benchmarks/RESULTS.md, "Audio-visual
    heatmaps on AV-digits")."""
    from benchmarks import heatmap_localisation
    from stica_jax import restore
    from stica_jax.models.stica import build_model

    home, cwd = newcomer_dirs(tmp_path)
    workdir = tmp_path / "work"
    # A user's XLA: the suite's settings (tests/command_line.py) compile faster but would run
    # these 370 steps 5× slower, and the measurements above were made without them.
    xla_flags = users_xla_flags(os.environ.get("XLA_FLAGS", ""))
    result = run_fresh(
        [
            "-m",
            "stica_jax.main",
            f"--config={REPO / 'tests' / 'localisation_config.py'}",
            f"--workdir={workdir}",
            f"--config.data_dir={tmp_path / 'data'}",
        ],
        home=str(home),
        cwd=str(cwd),
        env={"JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1", "XLA_FLAGS": xla_flags},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config, trained, step = restore.restore_model(str(workdir))
    assert step == 370
    random = build_model(config.model, config.crops, rngs=nnx.Rngs(config.seed))
    random.eval()
    input_config = config.input.to_dict()
    rates = {
        name: heatmap_localisation.measure_two_sources(model, input_config, TWO_SOURCES, pairs=30)
        for name, model in (("trained", trained), ("random init", random))
    }
    assert 0.4 < rates["trained"]["chance"] < 0.6, rates  # each digit covers its half's cells
    assert rates["trained"]["sounding"] >= 0.7, rates
    assert rates["trained"]["silent"] <= 0.3, rates
    assert rates["trained"]["sounding"] > rates["random init"]["sounding"] + 0.2, rates


def test_colours_run_from_blue_to_red():
    colours = heatmap.colorize(np.array([0.0, 0.5, 1.0]))
    assert colours[0, 2] > colours[0, 0] and colours[2, 0] > colours[2, 2]
    assert (
        heatmap.colorize(np.array([-1.0, 2.0])).tolist()
        == heatmap.colorize(np.array([0.0, 1.0])).tolist()
    )


def run_cli(*args: str, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    home, cwd = newcomer_dirs(tmp_path)
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "stica_jax.heatmap", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def tiny_workdir(path: pathlib.Path, dtype: str = "float32") -> str:
    """A pretraining workdir of the tiny STiCA (`tests/tiny.py`, computing in `dtype`) with a
    step-3 checkpoint."""
    import orbax.checkpoint as ocp

    from stica_jax import checkpointing, train
    from tests.tiny import tiny_config

    config = tiny_config(dtype)
    _, _, state = train.create_train_state(config)
    checkpointing.save_config(str(path), config)
    manager = checkpointing.make_manager(str(path), async_save=False)
    manager.save(3, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    return str(path)


@pytest.mark.slow
def test_the_command_writes_a_png_per_video_and_an_index(tmp_path):
    spec = av_digits.AvDigitsSpec(frame_size=48, seconds=1.5)
    frames, audio, _, _ = digit_clips.render(0, spec)
    digits_mp4 = digit_clips.write_mp4(str(tmp_path / "digit.mp4"), frames, audio, spec)
    from tests.data_pipeline import media_files

    tone_mp4 = media_files.write_clip(str(tmp_path / "media" / "tone.mp4"), seconds=1.2)
    workdir = tiny_workdir(tmp_path / "work")
    out = tmp_path / "out"
    result = run_cli(
        f"--config.init.workdir={workdir}",
        f"--video={digits_mp4},{tone_mp4}",
        f"--out={out}",
        "--config.short_side=64",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    index = (out / "index.html").read_text()
    for name, (height, width) in (("digit.png", (48, 48)), ("tone.png", (48, 64))):
        image = Image.open(out / name)
        image.load()  # a complete, valid PNG
        # The middle frame, decoded at short side 128, enlarged to 256 rows for viewing.
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.height == 256 and abs(image.width - 256 * width / height) <= 1
        assert f'src="{name}"' in index
    # The page's colour scale is the pictures': the ramp's two ends, dark blue and dark red.
    low, high = heatmap.colorize(np.array([0.0, 1.0]))
    assert f"rgb({low[0]}, {low[1]}, {low[2]}) 0%" in index
    assert f"rgb({high[0]}, {high[1]}, {high[2]}) 100%" in index
    assert index.count('class="bar"') == 3  # the page's legend and one per picture
    for path in (out / "index.html", out / "digit.png", out / "tone.png"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path  # umask 022 (conftest)
    assert str(out / "digit.png") in result.stdout
    assert not list((tmp_path / "cwd").iterdir())  # nothing written where it ran


def test_a_missing_video_is_one_line_and_exit_2(tmp_path):
    result = run_cli(
        "--config.init.workdir=/nowhere",
        f"--video={tmp_path / 'missing.mp4'}",
        f"--out={tmp_path / 'out'}",
        tmp_path=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"stica_jax.heatmap: error: video not found: {tmp_path / 'missing.mp4'}"
    )
    result = run_cli(f"--out={tmp_path / 'out'}", tmp_path=tmp_path)
    assert result.returncode == 2 and "--video" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_a_video_without_sound_or_workdir_is_one_line(tmp_path):
    from tests.data_pipeline import media_files

    silent = media_files.write_clip(str(tmp_path / "silent.mp4"), seconds=1.2, audio_hz=None)
    with pytest.raises(heatmap.HeatmapError, match="cannot use .*silent.mp4: no audio stream"):
        heatmap.decode_video(silent, demo_input())
    config = heatmap.default_config()
    config.init.workdir = str(tmp_path / "nowork")
    with pytest.raises(heatmap.HeatmapError, match="nowork is not a directory") as error:
        heatmap.load_model(config)
    assert "\n" not in str(error.value)
    config.init.workdir = str(tmp_path)  # a directory, but no run's
    with pytest.raises(heatmap.HeatmapError, match="config.json not found") as error:
        heatmap.load_model(config)
    assert "\n" not in str(error.value)
