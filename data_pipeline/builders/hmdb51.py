"""HMDB-51 with its three official splits (video only: the dataset is used for fine-tuning)."""

import collections
import os
import re

from data_pipeline.media_builder import (
    MediaBuilderConfig,
    MediaDatasetBuilder,
    MediaItem,
    files_by_name,
    videos_by_stem,
)
from data_pipeline.media_decode import DecodeSettings

_DECODE = DecodeSettings(min_seconds=1.0, audio="none")
_SPLIT_FILE = re.compile(r"^(?P<class_name>.+)_test_split(?P<fold>[123])\.txt$")


class SticaHmdb51(MediaDatasetBuilder):
    """HMDB-51: configs fold1..fold3, splits train/test (split-file codes 1 and 2; 0 is unused)."""

    name = "stica_hmdb51"
    NUM_CLASSES = 51
    HOMEPAGE = "https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/"
    BUILDER_CONFIGS = [
        MediaBuilderConfig(name=f"fold{fold}", fold=fold, decode=_DECODE) for fold in (1, 2, 3)
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Extract `hmdb51_org.rar` and its per-class archives (`<class>/<video>.avi`) and
  `test_train_splits.rar` (`<class>_test_split{1,2,3}.txt`) anywhere under the manual dir.
  """

    def list_media(self, manual_dir: str) -> dict[str, list[MediaItem]]:
        fold = str(self.builder_config.fold)
        split_files = {}
        for name, path in files_by_name(manual_dir, (".txt",)).items():
            match = _SPLIT_FILE.match(name)
            if match and match["fold"] == fold:
                split_files[match["class_name"]] = path
        class_names = sorted(split_files)
        videos = videos_by_stem(manual_dir)  # listed as .avi, found in any container
        splits = collections.defaultdict(list)
        for label, class_name in enumerate(class_names):
            with open(split_files[class_name]) as file:
                for line in file:
                    if not line.strip():
                        continue
                    video, code = line.split()
                    if code not in ("1", "2"):
                        continue
                    path = videos.get(
                        os.path.splitext(video)[0], os.path.join(manual_dir, class_name, video)
                    )
                    split = "train" if code == "1" else "test"
                    splits[split].append(
                        MediaItem(os.path.relpath(path, manual_dir), path, label, class_name)
                    )
        return dict(splits)
