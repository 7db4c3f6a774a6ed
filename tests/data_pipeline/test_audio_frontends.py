import dataclasses

import ml_collections
import numpy as np
import pytest

from data_pipeline import stages
from data_pipeline.audio_features import log_mel_spectrogram, official_log_filterbank
from data_pipeline.audio_frontends import (
    AUDIO_FRONTENDS,
    check_audio_frontend,
    num_spectrogram_frames,
)
from data_pipeline.input_config import InputConfig
from data_pipeline.tensorflow_cpu import tf
from stica_jax import shapes

# Below one 480-sample window, exactly one, one sample over, hops that do and do not divide the
# rest, and the 1-s and 2-s clips of spec §7 (24 kHz).
LENGTHS = [1, 479, 480, 481, 719, 720, 721, 24_000, 24_100, 48_000]


@pytest.mark.parametrize("num_samples", LENGTHS)
def test_stica_frame_count_is_what_tf_signal_frames(num_samples):
    waveform = np.zeros(num_samples, np.float32)
    # tf.signal.stft's own framing; its FFT refuses zero frames, so it is asked only for more.
    frames = tf.signal.frame(waveform, 480, 240, pad_end=False).shape[0]
    assert num_spectrogram_frames(num_samples) == frames
    if frames:
        assert log_mel_spectrogram(waveform, num_mel_bins=8).shape == (8, frames)


@pytest.mark.parametrize("num_samples", LENGTHS)
def test_official_frame_count_is_what_logfbank_gives_the_official_loader(num_samples):
    import python_speech_features

    # As the official datasets/audio_utils.py calls it (int16-scaled samples, 24 kHz).
    waveform = np.random.default_rng(num_samples).uniform(-0.5, 0.5, num_samples)
    reference = python_speech_features.logfbank(
        waveform * 32768, 24000, winlen=0.02, winstep=0.01, nfilt=257, nfft=1024
    )
    assert num_spectrogram_frames(num_samples, frontend="official") == reference.shape[0]
    ours = official_log_filterbank(waveform.astype(np.float32), num_filters=8)
    assert ours.shape == (8, reference.shape[0])


@pytest.mark.parametrize("frontend", AUDIO_FRONTENDS)
@pytest.mark.parametrize("seconds", [1.0, 2.0, 1.004, 0.02])
def test_config_shapes_count_frames_as_the_pipeline_computes_them(frontend, seconds):
    """The trainer's shapes (no TensorFlow) and the pipeline's config agree with the features."""
    input_config = InputConfig(audio_frontend=frontend, audio_seconds=seconds)
    waveform = np.zeros([1, input_config.audio_samples], np.float32)
    features = stages.spectrogram(waveform, input_config)  # [1, F, T_spec, 1]
    config_input = ml_collections.ConfigDict(dataclasses.asdict(input_config))  # config.input
    assert shapes.spectrogram_frames(config_input) == features.shape[2]
    assert input_config.spectrogram_frames == features.shape[2]


def test_a_clip_shorter_than_one_window_has_no_config_shape():
    config = ml_collections.ConfigDict(
        {"audio_seconds": 0.01, "sample_rate": 24_000, "window_length": 480, "hop_length": 240}
    )
    with pytest.raises(ValueError, match="0.01 s of audio is shorter than one 480-sample window"):
        shapes.spectrogram_frames(config)


def test_an_unknown_front_end_is_one_line_naming_the_known_ones():
    assert [check_audio_frontend(name) for name in AUDIO_FRONTENDS] == ["stica", "official"]
    message = r"unknown input.audio_frontend 'mfcc'; expected one of \['stica', 'official'\]"
    with pytest.raises(ValueError, match=message):
        check_audio_frontend("mfcc")
    with pytest.raises(KeyError):
        check_audio_frontend("mfcc", KeyError)
