"""ESC-50: 2,000 five-second environmental sounds, 50 classes, 5 official folds (audio only)."""

import collections
import csv
import os

from data_pipeline.media_builder import (
    MediaBuilderConfig,
    MediaDatasetBuilder,
    MediaItem,
    files_by_name,
)
from data_pipeline.media_decode import DecodeSettings


class SticaEsc50(MediaDatasetBuilder):
    """ESC-50: splits fold1..fold5 (each one official fold), so a protocol fold k is
    test=`fold{k}`, train=the sum of the other four (e.g. "fold2+fold3+fold4+fold5")."""

    name = "stica_esc50"
    NUM_CLASSES = 50
    HOMEPAGE = "https://github.com/karolpiczak/ESC-50"
    BUILDER_CONFIGS = [
        MediaBuilderConfig(
            name="default", decode=DecodeSettings(video=False, audio="required", min_seconds=1.0)
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Extract the ESC-50 repository (`audio/*.wav`, `meta/esc50.csv`) into the manual dir."
    )

    def list_media(self, manual_dir: str) -> dict[str, list[MediaItem]]:
        meta = files_by_name(manual_dir, ("esc50.csv",))["esc50.csv"]
        audio_dir = os.path.join(os.path.dirname(os.path.dirname(meta)), "audio")
        splits = collections.defaultdict(list)
        with open(meta, newline="") as file:
            for row in csv.DictReader(file):
                path = os.path.join(audio_dir, row["filename"])
                splits[f"fold{row['fold']}"].append(
                    MediaItem(
                        os.path.relpath(path, manual_dir), path, int(row["target"]), row["category"]
                    )
                )
        return dict(splits)
