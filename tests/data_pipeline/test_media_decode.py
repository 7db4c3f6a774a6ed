import fractions
import io
import os

import numpy as np
import pytest
from PIL import Image

from data_pipeline.media_decode import DecodeSettings, MediaSkipped, decode_media
from tests.data_pipeline import media_files

SETTINGS = DecodeSettings(short_side=32, min_seconds=1.0)


def _levels(jpeg_frames: list[bytes]) -> list[float]:
    return [
        float(np.asarray(Image.open(io.BytesIO(jpeg)).convert("L")).mean()) for jpeg in jpeg_frames
    ]


@pytest.mark.parametrize("source_fps", [30, 25, fractions.Fraction(30000, 1001)])
def test_frame_k_shows_the_content_of_time_k_over_30(tmp_path, source_fps):
    path = media_files.write_clip(str(tmp_path / "clip.mp4"), seconds=1.2, fps=source_fps)
    media = decode_media(path, SETTINGS)
    source_frames = round(1.2 * float(source_fps))
    assert abs(len(media.jpeg_frames) - source_frames * 30 / float(source_fps)) <= 1
    for k, level in enumerate(_levels(media.jpeg_frames)):
        # The source frame on screen at time k / 30 (± 1 ms: timestamps are rounded to the time base).
        on_screen = {
            min(int(np.floor((k / 30 + dt) * float(source_fps))), source_frames - 1)
            for dt in (-1e-3, 1e-3)
        }
        assert media_files.frame_number(level) in on_screen, (k, level)


def test_frames_are_resized_to_the_short_side_keeping_the_aspect(tmp_path):
    landscape = decode_media(
        media_files.write_clip(str(tmp_path / "a.mp4"), size=(48, 64)), SETTINGS
    )
    portrait = decode_media(
        media_files.write_clip(str(tmp_path / "b.mp4"), size=(64, 48)), SETTINGS
    )
    huge = decode_media(
        media_files.write_clip(str(tmp_path / "c.mp4"), size=(720, 1280), seconds=1.0), SETTINGS
    )
    assert (landscape.height, landscape.width) == (32, 43)
    assert (portrait.height, portrait.width) == (43, 32)
    assert (huge.height, huge.width) == (32, 57)
    assert Image.open(io.BytesIO(huge.jpeg_frames[0])).size == (57, 32)


@pytest.mark.parametrize(
    "container, sample_rate, channels", [("mp4", 48_000, 2), ("avi", 44_100, 1), ("wav", 44_100, 2)]
)
def test_audio_survives_as_24khz_mono_int16_with_its_tone(
    tmp_path, container, sample_rate, channels
):
    if container == "wav":
        path = media_files.write_wav(
            str(tmp_path / "a.wav"),
            seconds=1.5,
            hz=1000.0,
            sample_rate=sample_rate,
            channels=channels,
        )
        settings = DecodeSettings(video=False, min_seconds=1.0)
    else:
        path = media_files.write_clip(
            str(tmp_path / f"a.{container}"),
            seconds=1.5,
            audio_hz=1000.0,
            sample_rate=sample_rate,
            channels=channels,
        )
        settings = SETTINGS
    audio = decode_media(path, settings).audio
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert abs(len(audio) - 1.5 * 24_000) < 0.05 * 24_000
    assert 0.3 * 32768 < np.abs(audio).max() < 0.6 * 32768  # amplitude 0.5, never all-zero
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 24_000 / len(audio) - 1000.0) < 5.0


def test_every_bad_input_is_skipped_with_its_reason(tmp_path):
    expected = media_files.write_bad_inputs(str(tmp_path))
    expected["absent.mp4"] = "missing_file"
    for name, reason in expected.items():
        with pytest.raises(MediaSkipped) as skipped:
            decode_media(os.path.join(tmp_path, name), SETTINGS)
        assert skipped.value.reason == reason, (name, str(skipped.value))


def test_audio_is_optional_where_the_dataset_says_so(tmp_path):
    path = media_files.write_clip(str(tmp_path / "silent.mp4"), seconds=1.2, audio_hz=None)
    media = decode_media(path, DecodeSettings(short_side=32, min_seconds=1.0, audio="optional"))
    assert media.audio.size == 0 and len(media.jpeg_frames) == 36
