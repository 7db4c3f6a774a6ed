"""On-disk cache of decoded media: what makes preparation parallel, resumable and shardable.

`data_pipeline.prepare` fills it from many processes (and machines sharing `data_dir`); the TFDS
builders then only pack cached entries into records. One entry per source file: `<key>.npz`
(frames + audio) or `<key>.skip.json` (why the file gives no example). Entries are written to a
temporary name and renamed (`atomic_file`), so an interrupted run leaves no half-written entry.
"""

import dataclasses
import hashlib
import io
import json
import os

import numpy as np

from data_pipeline import atomic_file
from data_pipeline.media_decode import DecodedMedia, DecodeSettings, MediaSkipped, decode_media


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """Where the decoded form of one source file lives."""

    directory: str
    key: str  # the source path relative to the manual dir

    @property
    def _stem(self) -> str:
        readable = "".join(
            c if c.isalnum() or c in "-_." else "_" for c in os.path.basename(self.key)
        )[-60:]
        return f"{hashlib.sha1(self.key.encode()).hexdigest()[:16]}_{readable}"

    @property
    def media_path(self) -> str:
        return os.path.join(self.directory, self._stem + ".npz")

    @property
    def skip_path(self) -> str:
        return os.path.join(self.directory, self._stem + ".skip.json")

    def is_done(self) -> bool:
        return os.path.exists(self.media_path) or os.path.exists(self.skip_path)


def cache_directory(data_dir: str, dataset_name: str, settings: DecodeSettings) -> str:
    return os.path.join(data_dir, "stica_decode_cache", dataset_name, settings.cache_name())


def save(entry: CacheEntry, media: DecodedMedia) -> None:
    offsets = np.cumsum([0] + [len(jpeg) for jpeg in media.jpeg_frames]).astype(np.int64)
    payload = dict(
        jpeg_bytes=np.frombuffer(b"".join(media.jpeg_frames), np.uint8),
        jpeg_offsets=offsets,
        frame_shape=np.array([media.height, media.width], np.int64),
        audio=media.audio.astype(np.int16),
        silent_audio=np.asarray(media.silent_audio),
    )
    npz = io.BytesIO()
    np.savez(npz, **payload)
    atomic_file.write_bytes(entry.media_path, npz.getvalue())


def save_skip(entry: CacheEntry, skipped: MediaSkipped) -> None:
    text = json.dumps({"key": entry.key, "reason": skipped.reason, "detail": skipped.detail})
    atomic_file.write_text(entry.skip_path, text)


def load(entry: CacheEntry) -> DecodedMedia | MediaSkipped:
    """The cached decode of `entry` (which must be done)."""
    if os.path.exists(entry.skip_path):
        with open(entry.skip_path) as file:
            record = json.load(file)
        return MediaSkipped(record["reason"], record["detail"])
    with np.load(entry.media_path) as payload:
        data, offsets = payload["jpeg_bytes"].tobytes(), payload["jpeg_offsets"]
        height, width = (int(v) for v in payload["frame_shape"])
        audio = payload["audio"]
        silent_audio = bool(payload["silent_audio"])
    frames = [data[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    return DecodedMedia(
        jpeg_frames=frames, height=height, width=width, audio=audio, silent_audio=silent_audio
    )


def is_silent(entry: CacheEntry) -> bool:
    """Whether the decoded file's audio was digital silence (reads one small array)."""
    with np.load(entry.media_path) as payload:
        return bool(payload["silent_audio"])


def decode_into_cache(source_path: str, entry: CacheEntry, settings: DecodeSettings) -> str | None:
    """Decodes one file into the cache (no-op when done); returns the skip reason or None.

    Runs in worker processes: every failure becomes a skip entry, never an exception, so one bad
    file cannot stop a preparation.
    """
    if os.path.exists(entry.media_path):
        return None
    if os.path.exists(entry.skip_path):
        return load(entry).reason
    os.makedirs(entry.directory, exist_ok=True)
    try:
        media = decode_media(source_path, settings)
    except MediaSkipped as skipped:
        save_skip(entry, skipped)
        return skipped.reason
    except Exception as error:  # noqa: BLE001 - an unforeseen FFmpeg failure still only skips one file.
        skipped = MediaSkipped(
            "truncated_or_corrupt", f"{source_path}: {type(error).__name__}: {error}"
        )
        save_skip(entry, skipped)
        return skipped.reason
    save(entry, media)
    return None
