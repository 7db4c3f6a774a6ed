"""What every stica_jax TFDS builder shares: the feature layout, the config, the decode path.

Stored example (keys present depend on the dataset's modalities):
  `video`: T JPEG frames at 30 fps, short side `short_side` (`tfds.features.Video`, jpeg; read
    with `tfds.decode.SkipDecoding()` so only the sampled frames are decoded);
  `audio`: int16 `[N]` mono at `sample_rate` Hz, sample 0 at the time of frame 0;
  `label`: int class index; `label_name`: its text; `id`: the source file relative to the
    manual dir.
"""

import abc
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

    VERSION = tfds.core.Version("1.0.0")
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
        return {name: self._generate_examples(items) for name, items in splits.items()}

    def _generate_examples(self, items: list[MediaItem]) -> Iterator[tuple[str, dict]]:
        for item in items:
            entry = self.cache_entry(item)
            # `prepare` decodes in parallel beforehand; a plain `download_and_prepare` decodes here.
            decode_cache.decode_into_cache(item.path, entry, self.decode_settings)
            decoded = decode_cache.load(entry)
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


def skipped_items(
    builder: MediaDatasetBuilder, splits: dict[str, list[MediaItem]]
) -> list[tuple[str, str, str, str]]:
    """(split, key, reason, detail) of every decoded-and-skipped item, from the decode cache."""
    rows = []
    for split, items in splits.items():
        for item in items:
            entry = builder.cache_entry(item)
            if os.path.exists(entry.skip_path):
                skipped = decode_cache.load(entry)
                rows.append((split, item.key, skipped.reason, skipped.detail))
    return rows


def files_by_name(root: str, suffixes: tuple[str, ...]) -> dict[str, str]:
    """Base name → path of every file under `root` ending in one of `suffixes` (first one wins)."""
    found: dict[str, str] = {}
    for directory, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            if name.lower().endswith(suffixes):
                found.setdefault(name, os.path.join(directory, name))
    return found
