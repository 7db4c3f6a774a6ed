"""Audio-visual heatmaps (seed §7.4): geometry on AV-digits, the command line, its errors."""

import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from data_pipeline import av_digits
from data_pipeline.media_decode import encode_jpeg, resized_shape
from stica_jax.evaluate import heatmap
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


def test_colours_run_from_blue_to_red():
    colours = heatmap.colorize(np.array([0.0, 0.5, 1.0]))
    assert colours[0, 2] > colours[0, 0] and colours[2, 0] > colours[2, 2]
    assert (
        heatmap.colorize(np.array([-1.0, 2.0])).tolist()
        == heatmap.colorize(np.array([0.0, 1.0])).tolist()
    )


def run_cli(*args: str, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir(exist_ok=True), home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "stica_jax.evaluate.heatmap", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def tiny_workdir(path: pathlib.Path) -> str:
    """A pretraining workdir of the tiny STiCA (`tests/tiny.py`) with a step-3 checkpoint."""
    import orbax.checkpoint as ocp

    from stica_jax import checkpointing, train
    from tests.tiny import tiny_config

    config = tiny_config()
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
        # The middle frame as decoded: short side 128 (data_pipeline's default).
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size[::-1] == resized_shape(height, width, 128)
        assert f'src="{name}"' in index
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
        f"stica_jax.evaluate.heatmap: error: video not found: {tmp_path / 'missing.mp4'}"
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
