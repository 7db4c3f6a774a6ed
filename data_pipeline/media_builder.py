"""What every stica_jax TFDS builder shares: the feature layout, the config, the decode path.

Stored example (keys present depend on the dataset's modalities):
  `video`: T JPEG frames at 30 fps, short side `short_side` (`tfds.features.Video`, jpeg; read
    with `tfds.decode.SkipDecoding()` so only the sampled frames are decoded);
  `audio`: int16 `[N]` mono at `sample_rate` Hz, sample 0 at the time of frame 0;
  `label`: int class index; `label_name`: its text; `id`: the source file relative to the
    manual dir.
"""

import abc
import collections
import dataclasses
import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from data_pipeline import decode_cache
from data_pipeline.media_decode import DecodedMedia, DecodeSettings, MediaSkipped
from data_pipeline.tensorflow_cpu import tf  # noqa: F401 - hides GPUs before TFDS touches TF.


class PcmAudio(tfds.features.Audio):
    """`tfds.features.Audio` stored as raw int16 bytes.

    With the default encoding TFDS writes an int64_list, up to 10 bytes per negative sample;
    `Audio.encode_example` forgets to apply the `bytes` encoding to arrays, so apply it here.
    """

    def encode_example(self, audio: np.ndarray):
        return tfds.features.Tensor.encode_example(self, np.asarray(audio, np.int16))


def media_features(
    *,
    num_classes: int,
    video: bool,
    audio: bool,
    sample_rate: int,
    label_names: list[str] | None = None,
) -> tfds.features.FeaturesDict:
    """The FeaturesDict of every stica_jax dataset (see module docstring)."""
    features = {
        "id": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=label_names)
        if label_names
        else tfds.features.ClassLabel(num_classes=num_classes),
        "label_name": tfds.features.Text(),
    }
    if video:
        features["video"] = tfds.features.Video(shape=(None, None, None, 3), encoding_format="jpeg")
    if audio:
        features["audio"] = PcmAudio(
            shape=(None,),
            dtype=np.int16,
            sample_rate=sample_rate,
            encoding=tfds.features.Encoding.BYTES,
        )
    return tfds.features.FeaturesDict(features)


@dataclasses.dataclass(eq=False)
class MediaBuilderConfig(tfds.core.BuilderConfig):
    """A fold (or the whole dataset) and how its media are decoded."""

    fold: int | None = None
    decode: DecodeSettings = DecodeSettings()


@dataclasses.dataclass(frozen=True)
class MediaItem:
    """One source file of a split: `path` may be missing on disk (it is then reported)."""

    key: str  # path relative to the manual dir: the example id and cache key
    path: str
    label: int
    label_name: str


class MediaDatasetBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A dataset prepared from raw media in a manual dir through `media_decode.decode_media`."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "1.1.0": "Frames at the display aspect ratio (non-square pixels); audio at digital "
        "silence counts as no audio; frame times tolerant of the container's time base.",
    }
    NUM_CLASSES: int
    LABEL_NAMES: list[str] | None = None

    @abc.abstractmethod
    def list_media(self, manual_dir: str) -> dict[str, list[MediaItem]]:
        """Split name → the items of this config's split, from the annotation files."""

    @property
    def decode_settings(self) -> DecodeSettings:
        return self.builder_config.decode

    def _info(self) -> tfds.core.DatasetInfo:
        settings = self.decode_settings
        return self.dataset_info_from_configs(
            features=media_features(
                num_classes=self.NUM_CLASSES,
                label_names=self.LABEL_NAMES,
                video=settings.video,
                audio=settings.audio != "none",
                sample_rate=settings.sample_rate,
            ),
            homepage=getattr(self, "HOMEPAGE", None),
        )

    def cache_directory(self) -> str:
        return decode_cache.cache_directory(
            os.fspath(self.data_dir_root), self.name, self.decode_settings
        )

    def cache_entry(self, item: MediaItem) -> decode_cache.CacheEntry:
        return decode_cache.CacheEntry(self.cache_directory(), item.key)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        splits = self.list_media(os.fspath(dl_manager.manual_dir))
        counts = outcome_counts(item_outcomes(self, splits))
        # TFDS cannot write a split without examples: one with no usable file is left out
        # (`datasets.split_info` names it, and the command that prepares it, when it is asked for).
        usable = {name: items for name, items in splits.items() if counts[name]["prepared"]}
        if not usable:
            raise ValueError(
                f"{self.name}/{self.builder_config.name}: no split has a usable file "
                f"({dict(counts)}); `python -m stica_jax.prepare` reports each file's reason"
            )
        return {name: self._generate_examples(items) for name, items in usable.items()}

    def _generate_examples(self, items: list[MediaItem]) -> Iterator[tuple[str, dict]]:
        for item in items:
            decoded = decode_cache.load(self.cache_entry(item))
            if isinstance(decoded, MediaSkipped):
                continue
            yield item.key, self.example_from_media(item, decoded)

    def example_from_media(self, item: MediaItem, media: DecodedMedia) -> dict:
        example = {"id": item.key, "label": item.label, "label_name": item.label_name}
        if self.decode_settings.video:
            example["video"] = media.jpeg_frames
        if self.decode_settings.audio != "none":
            example["audio"] = media.audio
        return example


KEPT_SILENT = "silent_audio_kept"  # an outcome, not a skip: optional audio at digital silence


def item_outcome(builder: MediaDatasetBuilder, item: MediaItem) -> tuple[str, str]:
    """(outcome, detail) of one item, decoding it into the cache first when it is not there:
    "prepared", `KEPT_SILENT` (prepared, stored without its silent audio), or a skip reason."""
    entry = builder.cache_entry(item)
    decode_cache.decode_into_cache(item.path, entry, builder.decode_settings)
    if os.path.exists(entry.skip_path):
        skipped = decode_cache.load(entry)
        return skipped.reason, skipped.detail
    if builder.decode_settings.audio == "optional" and decode_cache.is_silent(entry):
        return KEPT_SILENT, "kept: the dataset's audio is optional; stored without audio"
    return "prepared", ""


def item_outcomes(
    builder: MediaDatasetBuilder, splits: dict[str, list[MediaItem]]
) -> dict[str, list[tuple[str, str, str]]]:
    """Split → (key, outcome, detail) of each of its items (`item_outcome`), in order."""
    return {
        split: [(item.key, *item_outcome(builder, item)) for item in items]
        for split, items in splits.items()
    }


def outcome_counts(
    outcomes: dict[str, list[tuple[str, str, str]]],
) -> dict[str, collections.Counter]:
    """Split → how many of its items were prepared (`KEPT_SILENT` ones included, and also
    counted under that key) or skipped for each reason."""
    counts = {}
    for split, rows in outcomes.items():
        counts[split] = collections.Counter({"prepared": 0})
        for _, outcome, _ in rows:
            counts[split]["prepared" if outcome == KEPT_SILENT else outcome] += 1
            if outcome == KEPT_SILENT:
                counts[split][KEPT_SILENT] += 1
    return counts


# Containers that real downloads come in (yt-dlp picks MP4, WebM or MKV per video; cameras write
# MOV, MP4, AVI, MTS; re-encodes anything): a listed video is found by its stem in any of them.
VIDEO_SUFFIXES = (
    ".mp4",
    ".mkv",
    ".webm",
    ".avi",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".ts",
    ".mts",
    ".flv",
    ".3gp",
    ".ogv",
    ".wmv",
)


def videos_by_stem(root: str) -> dict[str, str]:
    """File name without its suffix → path of every video (`VIDEO_SUFFIXES`) under `root`
    (the first in sorted walk order wins)."""
    return {
        os.path.splitext(name)[0]: path
        for name, path in reversed(files_by_name(root, VIDEO_SUFFIXES).items())
    }


def files_by_name(root: str, suffixes: tuple[str, ...]) -> dict[str, str]:
    """Base name → path of every file under `root` ending in one of `suffixes` (first one wins)."""
    found: dict[str, str] = {}
    for directory, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            if name.lower().endswith(suffixes):
                found.setdefault(name, os.path.join(directory, name))
    return found
