"""Raw media → 30-fps JPEG frames at a fixed short side + mono int16 audio, with PyAV.

The one decode path of every builder. It imports neither TensorFlow nor JAX, so the worker
processes of `data_pipeline.prepare` stay light. A file that cannot give a usable example raises
`MediaSkipped` with one of `SKIP_REASONS`; nothing else escapes `decode_media`.

Frames are stored as they are displayed: non-square pixels (a sample aspect ratio other than
1:1, common in DV, broadcast and phone footage) are resized to the display aspect ratio, as
ffmpeg and every player show them. Frame times are the container's own timestamps, whatever
their time base (1/1000 in WebM and Matroska, 1/90000 in MPEG-TS), so rounding to the time base
neither adds nor drops a frame. An audio track at digital silence counts as no audio
(`is_digital_silence`).
"""

import dataclasses
import fractions
import io
import os
from typing import Literal

import av
import numpy as np
from PIL import Image

SKIP_REASONS = (
    "missing_file",  # listed by the annotations, absent on disk
    "empty_file",  # zero bytes
    "not_media",  # no container FFmpeg recognises
    "truncated_or_corrupt",  # a known container that cannot be read to its end
    "no_video_stream",
    "no_audio_stream",
    "silent_audio",  # an audio track at digital silence where audio is required
    "too_short",  # shorter than the training clip
    "resolution_too_small",
    "resolution_too_large",
)

AudioPolicy = Literal["required", "optional", "none"]

# The decoder's own revision, part of every decode-cache name: a change to what `decode_media`
# produces for the same file and settings bumps it, so no cache entry of the old decoder is reused.
# 2: display aspect ratio, time-base tolerant frame times, digital silence.
DECODER_REVISION = 2

# Digital silence: a track whose int16 peak is at most this. Zeros decode to exactly 0 through
# AAC, MP3, Opus, AC-3 and PCM; ±2 LSB leaves room for dither. Noise at -80 dBFS RMS, quieter
# than any real recording, peaks at 9-10 LSB through the same codecs (measured with PyAV/FFmpeg
# 8.1), so nothing that was ever sound is called silent.
SILENCE_PEAK = 2

# Leading bytes of containers FFmpeg reads: a file that starts like one but fails to open was cut
# short or damaged, rather than being something else entirely.
_CONTAINER_SIGNATURES = (b"RIFF", b"\x1aE\xdf\xa3", b"\x00\x00\x01\xba", b"OggS", b"fLaC", b"ID3")


class MediaSkipped(Exception):
    """A media file that gives no example; `reason` is one of `SKIP_REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in SKIP_REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    """How raw media become stored examples (changing any field re-decodes everything)."""

    fps: float = 30.0
    short_side: int = 128
    sample_rate: int = 24_000
    video: bool = True
    audio: AudioPolicy = "required"
    min_seconds: float = 2.0  # the training clip: shorter files are skipped
    jpeg_quality: int = 90
    min_input_short_side: int = 32
    max_input_side: int = 8192

    def cache_name(self) -> str:
        """A file-name-safe identity of these settings, for the decode cache."""
        return (
            f"fps{self.fps:g}_ss{self.short_side}_sr{self.sample_rate}_v{int(self.video)}"
            f"_a{self.audio}_min{self.min_seconds:g}_q{self.jpeg_quality}"
            f"_in{self.min_input_short_side}-{self.max_input_side}_d{DECODER_REVISION}"
        )


@dataclasses.dataclass
class DecodedMedia:
    """One decoded file: `jpeg_frames[k]` shows the content of time k / fps.

    Attributes:
      jpeg_frames: T JPEG images of height × width (empty when video is not decoded).
      height, width: stored frame size (short side = `DecodeSettings.short_side`).
      audio: int16 `[N]` mono at `DecodeSettings.sample_rate`, aligned with frame 0; `[0]` when
        absent.
      silent_audio: the file's audio track was at digital silence, and is stored as no audio
        (where the dataset's audio is optional; where it is required the file is skipped).
    """

    jpeg_frames: list[bytes]
    height: int
    width: int
    audio: np.ndarray
    silent_audio: bool = False


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """uint8 `[H, W, 3]` → JPEG bytes (4:2:0, what `tf.io.decode_jpeg` reads fastest)."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def is_digital_silence(audio: np.ndarray) -> bool:
    """True for int16 samples whose peak is at most `SILENCE_PEAK` (all zeros, or dither)."""
    return bool(audio.size) and int(np.max(np.abs(audio.astype(np.int32)))) <= SILENCE_PEAK


def display_width(width: int, sample_aspect_ratio: fractions.Fraction | None) -> float:
    """The width a frame of `width` stored pixels is displayed at: `width × SAR` (ffmpeg's
    display aspect ratio); unknown or invalid ratios (None, 0/1) count as square pixels."""
    if not sample_aspect_ratio or sample_aspect_ratio <= 0:
        return float(width)
    return width * float(sample_aspect_ratio)


def resized_shape(height: int, width: float, short_side: int) -> tuple[int, int]:
    """(h, w) with the shorter side equal to `short_side`, aspect kept (340×256 → 128×170)."""
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def _open(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise MediaSkipped("missing_file", path)
    if os.path.getsize(path) == 0:
        raise MediaSkipped("empty_file", path)
    try:
        return av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        with open(path, "rb") as file:
            head = file.read(12)
        looks_like_media = head.startswith(_CONTAINER_SIGNATURES) or head[4:8] == b"ftyp"
        reason = "truncated_or_corrupt" if looks_like_media else "not_media"
        raise MediaSkipped(reason, f"{path}: {error}") from None


class _FrameResampler:
    """Turns decoded frames (any rate, variable too) into frames at exactly `fps`.

    Output frame k is the source frame on screen at time k / fps: the last one whose presentation
    time is ≤ k / fps. Timestamps are rounded to the stream's time base (a 30-fps frame at
    66.67 ms is stored as 67 in a 1/1000 time base), so a frame counts as on screen from one
    time-base tick before its stored time. The last frame fills the output frames whose slot it
    covers at least half of: a clip that ends a tick late does not gain a frame.
    """

    def __init__(
        self, fps: float, out_shape: tuple[int, int], jpeg_quality: int, time_base: float = 0.0
    ):
        self._fps = fps
        self._tolerance = max(1e-4, min(time_base, 0.25 / fps))
        self._out_height, self._out_width = out_shape
        self._quality = jpeg_quality
        self._pending: av.VideoFrame | None = None
        self._pending_jpeg: bytes | None = None
        self.jpeg_frames: list[bytes] = []

    def _pending_as_jpeg(self) -> bytes:
        if self._pending_jpeg is None:
            rgb = self._pending.reformat(
                width=self._out_width, height=self._out_height, format="rgb24", interpolation="AREA"
            ).to_ndarray()
            self._pending_jpeg = encode_jpeg(rgb, self._quality)
        return self._pending_jpeg

    def _emit_until(self, time_s: float) -> None:
        """Emits the pending frame for every output slot that starts before `time_s`."""
        while self._pending is not None and len(self.jpeg_frames) / self._fps < time_s:
            self.jpeg_frames.append(self._pending_as_jpeg())

    def push(self, frame: av.VideoFrame, time_s: float) -> None:
        """`time_s`: presentation time relative to the first video frame."""
        self._emit_until(time_s - self._tolerance)
        self._pending, self._pending_jpeg = frame, None

    def finish(self, end_time_s: float) -> None:
        """`end_time_s`: when the last frame leaves the screen."""
        self._emit_until(end_time_s - 0.5 / self._fps)


def decode_media(path: str, settings: DecodeSettings) -> DecodedMedia:
    """Decodes one file per `settings`; raises `MediaSkipped` when it gives no example.

    Video: frames at `settings.fps` (duplicated or dropped from 25, 29.97, variable-rate input),
    short side `settings.short_side`, JPEG. Audio: mono, `settings.sample_rate`, int16, sample 0
    at the time of video frame 0 (audio-only files: at the first audio sample).
    """
    container = _open(path)
    try:
        return _decode_open_container(container, path, settings)
    except MediaSkipped:
        raise
    except (av.FFmpegError, ValueError, RuntimeError, MemoryError, OverflowError) as error:
        raise MediaSkipped(
            "truncated_or_corrupt", f"{path}: {type(error).__name__}: {error}"
        ) from None
    finally:
        container.close()


def _decode_open_container(container, path: str, settings: DecodeSettings) -> DecodedMedia:
    video_stream = (
        container.streams.video[0] if settings.video and container.streams.video else None
    )
    audio_stream = (
        container.streams.audio[0] if settings.audio != "none" and container.streams.audio else None
    )
    if settings.video and video_stream is None:
        raise MediaSkipped("no_video_stream", path)
    if settings.audio == "required" and audio_stream is None:
        raise MediaSkipped("no_audio_stream", path)

    resampler = None
    if video_stream is not None:
        height, width = video_stream.codec_context.height, video_stream.codec_context.width
        if min(height, width) < settings.min_input_short_side:
            raise MediaSkipped("resolution_too_small", f"{path}: {width}x{height}")
        if max(height, width) > settings.max_input_side:
            raise MediaSkipped("resolution_too_large", f"{path}: {width}x{height}")
        video_stream.thread_type = "AUTO"
        # The container's ratio first (MP4 `pasp`, Matroska display size), then the codec's, as
        # ffmpeg's av_guess_sample_aspect_ratio.
        sar = video_stream.sample_aspect_ratio or video_stream.codec_context.sample_aspect_ratio
        out_shape = resized_shape(height, display_width(width, sar), settings.short_side)
        resampler = _FrameResampler(
            settings.fps,
            out_shape,
            settings.jpeg_quality,
            float(video_stream.time_base) if video_stream.time_base else 0.0,
        )
    else:
        out_shape = (0, 0)

    audio_resampler = (
        av.AudioResampler(format="s16", layout="mono", rate=settings.sample_rate)
        if audio_stream
        else None
    )
    audio_chunks: list[np.ndarray] = []
    first_video_time = first_audio_time = None
    last_video_time, last_frame_duration = 0.0, 1.0 / settings.fps
    decode_errors = 0
    streams = [s for s in (video_stream, audio_stream) if s is not None]
    for packet in container.demux(streams):
        try:
            frames = packet.decode()
        except av.FFmpegError:
            # One bad packet in a long file costs a frame; many mean the file is damaged (below).
            decode_errors += 1
            continue
        for frame in frames:
            if packet.stream is video_stream:
                time_s = frame.time
                if time_s is None:
                    time_s = (
                        (last_video_time + last_frame_duration)
                        if first_video_time is not None
                        else 0.0
                    )
                if first_video_time is None:
                    first_video_time = time_s
                relative = time_s - first_video_time
                if relative < last_video_time:  # out-of-order or repeated timestamps
                    relative = last_video_time
                if relative > last_video_time:
                    last_frame_duration = relative - last_video_time
                if frame.duration and frame.time_base:  # the container's own, where it has one
                    last_frame_duration = float(frame.duration * frame.time_base)
                last_video_time = relative
                resampler.push(frame, relative)
            else:
                if first_audio_time is None:
                    first_audio_time = frame.time if frame.time is not None else 0.0
                for resampled in audio_resampler.resample(frame):
                    audio_chunks.append(resampled.to_ndarray().reshape(-1))
    if audio_resampler is not None:
        for resampled in audio_resampler.resample(None):
            audio_chunks.append(resampled.to_ndarray().reshape(-1))

    if decode_errors > 10:
        raise MediaSkipped("truncated_or_corrupt", f"{path}: {decode_errors} undecodable packets")
    audio = (
        np.concatenate(audio_chunks).astype(np.int16) if audio_chunks else np.zeros([0], np.int16)
    )
    jpeg_frames: list[bytes] = []
    if resampler is not None:
        if first_video_time is None:
            raise MediaSkipped("truncated_or_corrupt", f"{path}: no decodable video frame")
        resampler.finish(last_video_time + last_frame_duration)
        jpeg_frames = resampler.jpeg_frames
        if audio.size and first_audio_time is not None:
            # Put audio sample 0 at the time of video frame 0.
            shift = round((first_audio_time - first_video_time) * settings.sample_rate)
            audio = (
                np.concatenate([np.zeros([shift], np.int16), audio])
                if shift > 0
                else audio[-shift:]
            )
    if settings.audio == "required" and audio.size == 0:
        raise MediaSkipped("no_audio_stream", f"{path}: the audio stream holds no samples")
    silent_audio = is_digital_silence(audio)
    if silent_audio:
        if settings.audio == "required":
            raise MediaSkipped(
                "silent_audio",
                f"{path}: the audio track is digital silence (peak ≤ {SILENCE_PEAK})",
            )
        audio = np.zeros([0], np.int16)  # optional audio: kept as a clip without audio

    seconds = (
        len(jpeg_frames) / settings.fps
        if resampler is not None
        else audio.size / settings.sample_rate
    )
    if settings.audio == "required" and resampler is not None:
        seconds = min(seconds, audio.size / settings.sample_rate)
    if seconds + 1e-6 < settings.min_seconds:
        raise MediaSkipped("too_short", f"{path}: {seconds:.3f} s < {settings.min_seconds:g} s")
    return DecodedMedia(
        jpeg_frames=jpeg_frames,
        height=out_shape[0],
        width=out_shape[1],
        audio=audio,
        silent_audio=silent_audio,
    )


def write_test_media(
    path: str,
    *,
    frames: np.ndarray | None = None,
    fps: float | fractions.Fraction = 30,
    audio: np.ndarray | None = None,
    sample_rate: int = 24_000,
    audio_layout: str = "mono",
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    sample_aspect_ratio: fractions.Fraction | None = None,
    video_start: float = 0.0,
    audio_start: float = 0.0,
) -> None:
    """Encodes uint8 `[T, H, W, 3]` frames and/or float `[N]` or `[N, C]` audio in [-1, 1] with PyAV.

    Used by the tests and the benchmark to make real media files (H.264/AAC mp4, MPEG-4 avi, VP9/
    Opus WebM, PCM wav...). `sample_aspect_ratio`: the pixels' width / height, written into the
    video stream (non-square pixels). `video_start`, `audio_start`: the time (s) of each stream's
    first frame or sample, as a camera that starts its audio late writes it.
    """
    fps = fractions.Fraction(fps).limit_denominator(1001)
    with av.open(path, "w") as container:
        video_stream = audio_stream = None
        if frames is not None:
            video_stream = container.add_stream(video_codec, rate=fps)
            video_stream.height, video_stream.width = frames.shape[1:3]
            video_stream.pix_fmt = "yuv420p"
            if sample_aspect_ratio is not None:
                video_stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
            if video_codec == "libx264":
                video_stream.options = {"preset": "ultrafast", "crf": "18"}
        if audio is not None:
            audio_stream = container.add_stream(audio_codec, rate=sample_rate, layout=audio_layout)
        if audio_stream is not None:
            samples = np.asarray(audio, np.float32)
            samples = samples[:, None] if samples.ndim == 1 else samples
            if audio_codec.startswith("pcm_s16"):
                planar = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
                fmt = "s16"
            else:
                planar = np.ascontiguousarray(samples.T)
                fmt = "fltp"
            frame = av.AudioFrame.from_ndarray(planar, format=fmt, layout=audio_layout)
            frame.sample_rate = sample_rate
            frame.pts = round(audio_start * sample_rate)
            frame.time_base = fractions.Fraction(1, sample_rate)
            for packet in audio_stream.encode(frame):
                container.mux(packet)
            for packet in audio_stream.encode(None):
                container.mux(packet)
        if video_stream is not None:
            for index, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = index + round(video_start * fps)
                frame.time_base = fractions.Fraction(1, 1) / fps
                for packet in video_stream.encode(frame):
                    container.mux(packet)
            for packet in video_stream.encode(None):
                container.mux(packet)
