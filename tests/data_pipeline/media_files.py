"""Tiny real media files (H.264/AAC mp4/mov/mkv, MPEG-4/PCM avi, VP9/Opus WebM, PCM wav) made
with PyAV for the tests."""

import fractions
import os

import numpy as np

from data_pipeline.media_decode import write_test_media


def numbered_frames(num_frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 `[T, H, W, 3]` grey frames whose level tells the frame number: 10 + 6 k (k < 40)."""
    levels = 10 + 6 * np.arange(num_frames)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).astype(
        np.uint8
    )


def frame_number(level: float) -> int:
    return int(round((level - 10) / 6))


def tone(
    seconds: float, hz: float, sample_rate: int, channels: int = 1, amplitude: float = 0.5
) -> np.ndarray:
    """float `[N]` (mono) or `[N, channels]` sine."""
    wave = amplitude * np.sin(
        2 * np.pi * hz * np.arange(round(seconds * sample_rate)) / sample_rate
    )
    return wave if channels == 1 else np.repeat(wave[:, None], channels, axis=1)


# Codecs by container: what real files of that container most often hold.
_CODECS = {
    ".avi": ("mpeg4", "pcm_s16le"),
    ".webm": ("libvpx-vp9", "libopus"),
}


def write_clip(
    path: str,
    *,
    seconds: float = 1.0,
    fps: float | fractions.Fraction = 30,
    size: tuple[int, int] = (48, 64),
    audio_hz: float | None = 440.0,
    audio_amplitude: float = 0.5,
    sample_rate: int = 48_000,
    channels: int = 2,
    frames: np.ndarray | None = None,
    sample_aspect_ratio: fractions.Fraction | None = None,
    audio: np.ndarray | None = None,
    video_start: float = 0.0,
    audio_start: float = 0.0,
) -> str:
    """A clip with numbered frames (or `frames`) and a tone (or `audio`, `[N]` in [-1, 1]); the
    container from the suffix (mp4, mov, mkv: H.264 + AAC; avi: MPEG-4 + PCM; webm: VP9 + Opus).
    `audio_amplitude=0` writes a track of digital silence; `video_start`, `audio_start` are the
    streams' start times (s)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if frames is None:
        frames = numbered_frames(max(1, round(seconds * float(fps))), *size)
    if audio is None and audio_hz:
        audio = tone(seconds, audio_hz, sample_rate, channels, audio_amplitude)
    video_codec, audio_codec = _CODECS.get(os.path.splitext(path)[1], ("libx264", "aac"))
    write_test_media(
        path,
        frames=frames,
        fps=fps,
        audio=audio,
        sample_rate=sample_rate,
        audio_layout="stereo" if channels == 2 else "mono",
        video_codec=video_codec,
        audio_codec=audio_codec,
        sample_aspect_ratio=sample_aspect_ratio,
        video_start=video_start,
        audio_start=audio_start,
    )
    return path


def write_wav(
    path: str,
    *,
    seconds: float = 1.0,
    hz: float = 440.0,
    sample_rate: int = 44_100,
    channels: int = 2,
) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_test_media(
        path,
        audio=tone(seconds, hz, sample_rate, channels),
        sample_rate=sample_rate,
        audio_layout="stereo" if channels == 2 else "mono",
        audio_codec="pcm_s16le",
    )
    return path


def write_bad_inputs(directory: str) -> dict[str, str]:
    """File name → the skip reason it must get (the issue's bad-input list), for video datasets
    that require audio and at least 1 s."""
    os.makedirs(directory, exist_ok=True)
    expected = {}
    open(os.path.join(directory, "empty.mp4"), "wb").close()
    expected["empty.mp4"] = "empty_file"
    with open(os.path.join(directory, "notes.mp4"), "w") as file:
        file.write("this is not a video\n" * 20)
    expected["notes.mp4"] = "not_media"
    whole = write_clip(os.path.join(directory, "whole.mp4"), seconds=1.2)
    with open(whole, "rb") as file:
        data = file.read()
    with open(os.path.join(directory, "truncated.mp4"), "wb") as file:
        file.write(data[: len(data) // 2])
    os.remove(whole)
    expected["truncated.mp4"] = "truncated_or_corrupt"
    write_clip(os.path.join(directory, "silent.mp4"), seconds=1.2, audio_hz=None)
    expected["silent.mp4"] = "no_audio_stream"
    write_clip(os.path.join(directory, "zeros.mp4"), seconds=1.2, audio_amplitude=0.0)
    expected["zeros.mp4"] = "silent_audio"  # an audio track of digital silence
    write_wav(os.path.join(directory, "sound_only.wav"), seconds=1.2)
    expected["sound_only.wav"] = "no_video_stream"
    write_clip(os.path.join(directory, "short.mp4"), seconds=0.5)
    expected["short.mp4"] = "too_short"
    write_clip(os.path.join(directory, "tiny.mp4"), seconds=1.2, size=(16, 16))
    expected["tiny.mp4"] = "resolution_too_small"
    return expected
