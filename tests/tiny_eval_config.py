"""`configs/eval/finetune_hmdb51.py` shrunk to seconds, for tests: the tiny STiCA of
`tests/tiny.py` (when not restored from a workdir), 8-frame 32² clips, 2 epochs of one clip per
video in batches of 8, 2 test clips per video, the official schedule's shape (×8 warmup over
the first epoch, ×0.05 after it). Usable as `--config=tests/tiny_eval_config.py` by subprocess
tests; `--config.dataset` and `--config.data_dir` point it at a tiny prepared dataset.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from configs.eval import finetune_hmdb51  # noqa: E402
from tests.tiny import tiny_config  # noqa: E402


def get_config():
    config = finetune_hmdb51.get_config()
    config.model = tiny_config().model
    config.folds = "1"
    i = config.input
    i.num_frames, i.frame_stride, i.crop_size, i.eval_short_side = 8, 2, 32, 32
    i.eval_clips, i.eval_crops = 2, 1
    i.chunk_size, i.group_size = 4, 3
    config.num_epochs, config.clips_per_video = 2, 1
    config.global_batch_size, config.eval_batch_size = 8, 8
    config.optimizer.warmup_epochs, config.optimizer.milestones = 1, (0,)
    config.eval_from_epoch = 1
    config.log_every_steps = 5
    return config
