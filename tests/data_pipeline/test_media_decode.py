import dataclasses
import fractions
import io
import os

import av
import numpy as np
import pytest
from PIL import Image

from data_pipeline.media_decode import DecodeSettings, MediaSkipped, decode_media, write_test_media
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


def test_a_frame_larger_than_the_limit_is_skipped_and_one_at_the_limit_is_kept(tmp_path):
    """`max_input_side` bounds the decoder's memory (an 8K frame is 100 MB as RGB); the bound
    applies to either side, and a side equal to it passes."""
    settings = dataclasses.replace(SETTINGS, max_input_side=64)
    wide = media_files.write_clip(os.path.join(tmp_path, "wide.mp4"), seconds=1.2, size=(48, 80))
    tall = media_files.write_clip(os.path.join(tmp_path, "tall.mp4"), seconds=1.2, size=(80, 48))
    for path, shape in ((wide, "80x48"), (tall, "48x80")):
        with pytest.raises(MediaSkipped) as skipped:
            decode_media(path, settings)
        assert skipped.value.reason == "resolution_too_large"
        assert str(skipped.value).endswith(f"{path}: {shape}"), str(skipped.value)
    at_limit = media_files.write_clip(os.path.join(tmp_path, "at.mp4"), seconds=1.2, size=(48, 64))
    assert len(decode_media(at_limit, settings).jpeg_frames) == 36


def test_audio_is_optional_where_the_dataset_says_so(tmp_path):
    path = media_files.write_clip(str(tmp_path / "silent.mp4"), seconds=1.2, audio_hz=None)
    media = decode_media(path, DecodeSettings(short_side=32, min_seconds=1.0, audio="optional"))
    assert media.audio.size == 0 and len(media.jpeg_frames) == 36


def _display_square(height: int, sar: fractions.Fraction) -> np.ndarray:
    """One uint8 `[H, W, 3]` frame: black, with a white block `height / 2` rows tall and as many
    *displayed* columns wide (`height / 2 / sar` stored columns), so it looks square on screen."""
    width = 2 * height
    frame = np.zeros((height, width, 3), np.uint8)
    rows, cols = height // 2, round(height / 2 / sar)
    frame[height // 4 : height // 4 + rows, 8 : 8 + cols] = 255
    return frame


@pytest.mark.parametrize(
    "name, height, sar",
    [
        ("pal_dv.mp4", 144, fractions.Fraction(128, 117)),  # QCIF's 176x144 from a PAL camera
        ("anamorphic.mkv", 96, fractions.Fraction(4, 3)),
        ("camera.mov", 96, fractions.Fraction(4, 3)),
        ("narrow.avi", 96, fractions.Fraction(2, 3)),
    ],
)
def test_non_square_pixels_are_stored_as_they_are_displayed(tmp_path, name, height, sar):
    frame = _display_square(height, sar)
    path = media_files.write_clip(
        str(tmp_path / name),
        frames=np.stack([frame] * 30),
        sample_aspect_ratio=sar,
    )
    with av.open(path) as container:  # FFmpeg's own reading of the file: the reference
        stream = container.streams.video[0]
        assert stream.sample_aspect_ratio == sar
        display_aspect = float(stream.display_aspect_ratio)
    media = decode_media(path, SETTINGS)
    image = np.asarray(Image.open(io.BytesIO(media.jpeg_frames[15])).convert("L"))
    assert image.shape == (media.height, media.width)
    assert media.height == 32 and abs(media.width - 32 * display_aspect) <= 0.5
    # The block that is square on screen is square in the stored frame.
    rows, cols = np.nonzero(image > 128)
    block_height, block_width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert block_height == 16 and abs(block_width - block_height) <= 1, (block_height, block_width)


def test_a_webm_with_millisecond_timestamps_keeps_exactly_its_frames(tmp_path):
    # 72 frames at 30 fps: 2.4 s. Their times, rounded to WebM's 1/1000 s, are 0, 33, 67, 100…;
    # levels repeat every 40 frames (numbered_frames' range).
    frames = media_files.numbered_frames(40)
    frames = np.concatenate([frames, frames[:32]])
    path = media_files.write_clip(str(tmp_path / "clip.webm"), frames=frames, seconds=2.4)
    with av.open(path) as container:
        assert container.streams.video[0].time_base == fractions.Fraction(1, 1000)
        assert container.streams.video[0].frames in (0, 72)  # WebM often does not say
    media = decode_media(path, SETTINGS)
    assert len(media.jpeg_frames) == 72
    assert [media_files.frame_number(v) for v in _levels(media.jpeg_frames)] == [
        k % 40 for k in range(72)
    ]


def test_digital_silence_is_no_audio(tmp_path):
    silent = media_files.write_clip(str(tmp_path / "zeros.mp4"), seconds=1.2, audio_amplitude=0)
    with pytest.raises(MediaSkipped) as skipped:
        decode_media(silent, SETTINGS)  # audio required (Kinetics)
    assert skipped.value.reason == "silent_audio"
    optional = DecodeSettings(short_side=32, min_seconds=1.0, audio="optional")
    kept = decode_media(silent, optional)
    assert kept.silent_audio and kept.audio.size == 0 and len(kept.jpeg_frames) == 36
    # A very quiet track (noise at -80 dBFS RMS: 3 of 32768) is sound, not silence.
    quiet = str(tmp_path / "quiet.mp4")
    noise = np.random.default_rng(0).normal(0, 10 ** (-80 / 20), 48_000 * 6 // 5)
    write_test_media(
        quiet,
        frames=media_files.numbered_frames(36),
        audio=noise,
        sample_rate=48_000,
    )
    media = decode_media(quiet, SETTINGS)
    assert not media.silent_audio and media.audio.size > 24_000
    assert 1.0 < np.sqrt(np.mean(media.audio.astype(np.float64) ** 2)) < 10.0


@pytest.mark.parametrize("container", ["mp4", "mkv"])
@pytest.mark.parametrize(
    "video_start, audio_start",
    [(0.0, 0.5), (0.5, 0.0)],
    ids=["audio starts 0.5 s late", "audio starts 0.5 s early"],
)
def test_audio_sample_0_is_heard_at_the_time_of_video_frame_0(
    tmp_path, container, video_start, audio_start
):
    """A 1 kHz burst at 0.6 s on the file's clock must sound 0.6 s - video_start into the
    decoded audio: late audio is padded with silence in front, early audio is cut."""
    sr, burst_at = 48_000, 0.6
    samples = np.zeros(round(2.0 * sr), np.float32)
    t0 = round((burst_at - audio_start) * sr)
    t = np.arange(round(0.2 * sr)) / sr
    samples[t0 : t0 + len(t)] = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    path = media_files.write_clip(
        str(tmp_path / f"clip.{container}"),
        seconds=1.5,
        audio=samples,
        sample_rate=sr,
        channels=1,
        video_start=video_start,
        audio_start=audio_start,
    )
    audio = decode_media(path, SETTINGS).audio
    onset = np.flatnonzero(np.abs(audio) > 0.1 * 32768)[0] / 24_000
    # AAC's priming and frame granularity: a few ms. The sign of the shift is 0.5 s.
    assert abs(onset - (burst_at - video_start)) < 0.02, onset


def _encode(path, frames, codec, *, fps=30, container_format=None, options=None, bad=()):
    """Video only, with PyAV: `frames` through `codec`; the packets of the frames in `bad`
    replaced by garbage bytes at the same timestamps (undecodable, as damaged packets are)."""
    with av.open(path, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.options = options or {}
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = index, fractions.Fraction(1, fps)
            for packet in stream.encode(frame):
                if index in bad:
                    garbage = av.Packet(b"\x00not a jpeg" * 40)
                    garbage.pts, garbage.dts = packet.pts, packet.dts
                    garbage.time_base, garbage.stream = packet.time_base, stream
                    packet = garbage
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize("bad_packets", [3, 10, 11])
def test_up_to_ten_undecodable_packets_cost_their_frames_and_more_skip_the_file(
    tmp_path, bad_packets
):
    """Motion JPEG (each packet one picture): packets 10, 11, … replaced by garbage. Ten or fewer
    cost only their pictures, the frame before stays on screen in their place; more mean a
    damaged file, skipped with its reason."""
    frames = media_files.numbered_frames(40)
    bad = set(range(10, 10 + bad_packets))
    path = _encode(str(tmp_path / "damaged.avi"), frames, "mjpeg", bad=bad)
    settings = dataclasses.replace(SETTINGS, audio="none")
    if bad_packets > 10:
        with pytest.raises(MediaSkipped) as skipped:
            decode_media(path, settings)
        assert skipped.value.reason == "truncated_or_corrupt"
        assert f"{bad_packets} undecodable packets" in str(skipped.value)
        return
    media = decode_media(path, settings)
    shown = [media_files.frame_number(level) for level in _levels(media.jpeg_frames)]
    assert shown == [k if k not in bad else 9 for k in range(40)], shown


def test_a_raw_h264_stream_without_timestamps_keeps_its_frames_in_order(tmp_path):
    """An elementary H.264 stream has no container timestamps: PyAV decodes its frames with
    `time` None. Each is placed one frame after the one before, at the decode rate."""
    path = _encode(
        str(tmp_path / "camera.h264"),
        media_files.numbered_frames(36),
        "libx264",
        container_format="h264",
        options={"preset": "ultrafast"},
    )
    with av.open(path) as container:
        assert all(frame.time is None for frame in container.decode(video=0))
    media = decode_media(path, dataclasses.replace(SETTINGS, audio="none"))
    shown = [media_files.frame_number(level) for level in _levels(media.jpeg_frames)]
    assert shown == list(range(36)), shown


def test_b_frames_stored_out_of_order_are_shown_in_order(tmp_path):
    """H.264 with B-frames: the packets come in decode order (a frame's future reference first),
    the frames in presentation order; the stored frames follow presentation time."""
    path = _encode(
        str(tmp_path / "bframes.mp4"),
        media_files.numbered_frames(36),
        "libx264",
        options={"preset": "medium", "bf": "3", "crf": "18"},
    )
    with av.open(path) as container:
        pts = [packet.pts for packet in container.demux(video=0) if packet.pts is not None]
    assert pts != sorted(pts)  # really stored out of order
    media = decode_media(path, dataclasses.replace(SETTINGS, audio="none"))
    shown = [media_files.frame_number(level) for level in _levels(media.jpeg_frames)]
    assert shown == list(range(36)), shown
