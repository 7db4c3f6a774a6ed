"""The demo config shrunk to seconds (a few dozen clips, a slimmer net, 12 steps), for tests.

Usable as `--config=tests/tiny_demo_config.py` by subprocess tests of `stica_jax.main`.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from configs import demo  # noqa: E402


def get_config():
    config = demo.get_config()
    config.av_digits = dict(num_train=48, num_test=24, seconds=1.5, frame_size=32)
    config.model.video_widths = config.model.audio_widths = (8, 8, 16, 16)
    config.model.transformer.mlp_width = 32
    config.model.head_hidden, config.model.embed_dim = 16, 16
    # The demo has no head dropout; the tests keep spec §4's, so resume and multi-host runs
    # check the per-sample dropout keys too.
    config.model.head_dropout = 0.3
    config.input.num_frames, config.input.crop_size, config.input.num_mel_bins = 16, 32, 32
    config.input.eval_short_side = 32
    config.crops.space_large, config.crops.space_small = 2, 1
    config.global_batch_size = 16
    # Two fixed data shards: a run of one host reads the batches two hosts read together, so
    # the session's trained run is the reference of the two-host run (tests/test_multihost_training.py).
    config.input_shards = 2
    config.eval.batch_size = 16
    config.num_epochs = 4  # 3 steps per epoch
    config.log_every_steps = 1
    config.checkpoint_every_steps = 4
    return config
