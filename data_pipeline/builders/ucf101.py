"""UCF-101 with its three official train/test folds."""

import os

from data_pipeline.media_builder import (
    MediaBuilderConfig,
    MediaDatasetBuilder,
    MediaItem,
    files_by_name,
    videos_by_stem,
)
from data_pipeline.media_decode import DecodeSettings

_DECODE = DecodeSettings(min_seconds=1.0, audio="optional")


class SticaUcf101(MediaDatasetBuilder):
    """UCF-101: configs fold1..fold3, splits train/test. Audio is kept where a video has it (about
    half do; the others store none)."""

    name = "stica_ucf101"
    NUM_CLASSES = 101
    HOMEPAGE = "https://www.crcv.ucf.edu/data/UCF101.php"
    BUILDER_CONFIGS = [
        MediaBuilderConfig(name=f"fold{fold}", fold=fold, decode=_DECODE) for fold in (1, 2, 3)
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Extract `UCF101.rar` (giving `UCF-101/<Class>/v_<Class>_gXX_cYY.avi`) and
  `UCF101TrainTestSplits-RecognitionTask.zip` (giving `ucfTrainTestlist/classInd.txt`,
  `trainlist0{1,2,3}.txt`, `testlist0{1,2,3}.txt`) into the manual dir.
  """

    def list_media(self, manual_dir: str) -> dict[str, list[MediaItem]]:
        lists = files_by_name(manual_dir, (".txt",))
        class_index = {}
        with open(lists["classInd.txt"]) as file:
            for line in file:
                if line.strip():
                    number, name = line.split()
                    class_index[name] = int(number) - 1
        # Listed as `<Class>/<name>.avi`; found by name in any container, anywhere below.
        videos = videos_by_stem(manual_dir)
        video_root = os.path.dirname(os.path.dirname(next(iter(videos.values()))))
        fold = self.builder_config.fold
        splits = {}
        for split, list_name in (
            ("train", f"trainlist0{fold}.txt"),
            ("test", f"testlist0{fold}.txt"),
        ):
            items = []
            with open(lists[list_name]) as file:
                for line in file:
                    if not line.strip():
                        continue
                    relative = line.split()[0]
                    class_name = relative.split("/")[0]
                    path = videos.get(
                        os.path.splitext(os.path.basename(relative))[0],
                        os.path.join(video_root, relative),
                    )
                    items.append(
                        MediaItem(
                            os.path.relpath(path, manual_dir),
                            path,
                            class_index[class_name],
                            class_name,
                        )
                    )
            splits[split] = items
        return splits
