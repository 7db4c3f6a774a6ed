"""Shared tiny data for the data_pipeline tests: everything small enough for 2 CPU cores."""

import pytest

from data_pipeline import av_digits
from data_pipeline.input_config import InputConfig

TINY_DIGITS = av_digits.AvDigitsSpec(num_train=40, num_test=12, seconds=2.2, frame_size=48, seed=3)


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> str:
    """A data_dir holding a prepared tiny AV-digits."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    av_digits.ensure_prepared(data_dir, TINY_DIGITS)
    return data_dir


@pytest.fixture
def tiny_config() -> InputConfig:
    """The demo-sized input: 8 frames at 32×32, 1-s audio, 40 mel bins, small read chunks."""
    return InputConfig(
        dataset=f"av_digits/{TINY_DIGITS.config_name()}",
        num_frames=8,
        frame_stride=2,
        crop_size=32,
        blur_kernel_size=5,
        audio_seconds=1.0,
        num_mel_bins=40,
        eval_clips=2,
        eval_short_side=40,
        audio_eval_subclips=3,
        audio_eval_seconds=1.0,
        chunk_size=4,
        group_size=3,
    )
