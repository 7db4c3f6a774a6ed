"""DCASE2014 acoustic scene classification (IEEE AASP D-CASE 2013 scenes): 10 classes, 100/100."""

import collections
import os
import re

from data_pipeline.media_builder import MediaBuilderConfig, MediaDatasetBuilder, MediaItem
from data_pipeline.media_decode import DecodeSettings

SCENES = [
    "bus",
    "busystreet",
    "office",
    "openairmarket",
    "park",
    "quietstreet",
    "restaurant",
    "supermarket",
    "tube",
    "tubestation",
]
_SPLIT_DIRECTORIES = {
    "scenes_stereo": "train",
    "train": "train",
    "scenes_stereo_testset": "test",
    "test": "test",
}
_SCENE_FILE = re.compile(r"^(?P<scene>[a-z]+)\d+\.wav$")


class SticaDcase2014(MediaDatasetBuilder):
    """DCASE2014 scenes: splits train (development set) and test; label from the file name
    (`bus01.wav` → bus)."""

    name = "stica_dcase2014"
    NUM_CLASSES = 10
    LABEL_NAMES = SCENES
    HOMEPAGE = "https://c4dm.eecs.qmul.ac.uk/sceneseventschallenge/"
    BUILDER_CONFIGS = [
        MediaBuilderConfig(
            name="default", decode=DecodeSettings(video=False, audio="required", min_seconds=1.0)
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put the development set in `scenes_stereo/` (or `train/`) and the test set in
  `scenes_stereo_testset/` (or `test/`) under the manual dir, files named `<scene><NN>.wav`.
  """

    def list_media(self, manual_dir: str) -> dict[str, list[MediaItem]]:
        splits = collections.defaultdict(list)
        for directory, _, names in sorted(os.walk(manual_dir)):
            split = _SPLIT_DIRECTORIES.get(os.path.basename(directory))
            if split is None:
                continue
            for name in sorted(names):
                match = _SCENE_FILE.match(name)
                if match and match["scene"] in SCENES:
                    path = os.path.join(directory, name)
                    splits[split].append(
                        MediaItem(
                            os.path.relpath(path, manual_dir),
                            path,
                            SCENES.index(match["scene"]),
                            match["scene"],
                        )
                    )
        return dict(splits)
