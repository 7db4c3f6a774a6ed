"""Kinetics-400 from its official annotation CSVs and the videos downloaded by hand."""

import csv
import os

from data_pipeline.media_builder import (
    MediaBuilderConfig,
    MediaDatasetBuilder,
    MediaItem,
    files_by_name,
    videos_by_stem,
)
from data_pipeline.media_decode import DecodeSettings

_SPLIT_NAMES = {
    "train": "train",
    "val": "validation",
    "valid": "validation",
    "validate": "validation",
    "validation": "validation",
    "test": "test",
}


class SticaKinetics400(MediaDatasetBuilder):
    """Kinetics-400: 30-fps JPEG frames (short side 128) + 24-kHz mono audio; splits train,
    validation, test (as the CSVs' `split` column says). Videos without audio or shorter than the
    2-s training clip are skipped and reported."""

    name = "stica_kinetics400"
    NUM_CLASSES = 400
    HOMEPAGE = "https://github.com/cvdfoundation/kinetics-dataset"
    BUILDER_CONFIGS = [
        MediaBuilderConfig(name="default", decode=DecodeSettings(min_seconds=2.0, audio="required"))
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put under the manual dir (any sub-folders): the annotation CSVs (`train.csv`, `validate.csv`,
  `test.csv`, header `label,youtube_id,time_start,time_end,split`) and the videos, named
  `{youtube_id}_{time_start:06d}_{time_end:06d}` in any container (.mp4, .mkv, .webm, .avi,
  .mov, ...). Rows without a video are reported as `missing_file`; rows without a label are not
  used; a split none of whose videos is usable is left out.
  """

    def list_media(self, manual_dir: str) -> dict[str, list[MediaItem]]:
        rows = []
        for path in files_by_name(manual_dir, (".csv",)).values():
            with open(path, newline="") as file:
                reader = csv.DictReader(file)
                if reader.fieldnames and "youtube_id" in reader.fieldnames:
                    rows.extend(reader)
        class_names = sorted({row["label"] for row in rows if row.get("label")})
        if len(class_names) > self.NUM_CLASSES:
            raise ValueError(
                f"{len(class_names)} labels in the Kinetics-400 CSVs, expected at most 400"
            )
        videos = videos_by_stem(manual_dir)
        splits: dict[str, list[MediaItem]] = {}
        seen = set()
        for row in rows:
            if not row.get("label"):
                continue
            stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
            if stem in seen:
                continue
            seen.add(stem)
            path = videos.get(stem, os.path.join(manual_dir, stem + ".mp4"))
            split = _SPLIT_NAMES[row["split"].strip().lower()]
            key = os.path.relpath(path, manual_dir)
            splits.setdefault(split, []).append(
                MediaItem(key, path, class_names.index(row["label"]), row["label"])
            )
        return splits
