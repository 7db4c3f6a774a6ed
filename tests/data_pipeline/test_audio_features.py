import numpy as np
import pytest

from data_pipeline.audio_features import (
    log_mel_spectrogram,
    logfbank_filterbank,
    mel_weight_matrix,
    num_spectrogram_frames,
    official_log_filterbank,
)


@pytest.mark.parametrize("seconds, frames", [(2.0, 199), (1.0, 99)])
def test_sota_settings_give_the_paper_spectrogram_shape(seconds, frames):
    waveform = np.zeros([2, round(seconds * 24_000)], np.float32)
    spectrogram = log_mel_spectrogram(waveform)
    assert spectrogram.shape == (2, 257, frames)
    assert num_spectrogram_frames(waveform.shape[-1]) == frames


def test_a_tone_peaks_in_the_mel_band_of_its_frequency():
    sample_rate, tone_hz = 24_000, 1_500.0
    waveform = 0.5 * np.sin(2 * np.pi * tone_hz * np.arange(sample_rate) / sample_rate).astype(
        np.float32
    )
    spectrogram = log_mel_spectrogram(waveform, num_mel_bins=64).numpy()
    weights = mel_weight_matrix(sample_rate=sample_rate, num_mel_bins=64, fft_length=1024).numpy()
    expected_band = int(np.argmax(weights[round(tone_hz / sample_rate * 1024)]))
    assert abs(int(np.argmax(spectrogram.mean(axis=1))) - expected_band) <= 1
    # Silence stays finite: log(0 + eps).
    silent = log_mel_spectrogram(np.zeros_like(waveform), num_mel_bins=64).numpy()
    assert np.allclose(silent, np.log(1e-6))


# --- the official front end against python_speech_features itself ---------------------------
# The official loader (facebookresearch/GDT `datasets/audio_utils.py`, `get_spec`) reads int16
# samples and calls `logfbank(wav, 24000, winlen=0.02, winstep=0.01, nfilt=257, nfft=1024)`
# (preemph 0.97 by default), then transposes to [257, T].


def _official_loader_spec(waveform: np.ndarray) -> np.ndarray:
    import python_speech_features

    int16_scaled = waveform.astype(np.float64) * 32768
    return python_speech_features.logfbank(
        int16_scaled, 24000, winlen=0.02, winstep=0.01, nfilt=257, nfft=1024, preemph=0.97
    ).T


def _signal(kind: str, seconds: float) -> np.ndarray:
    n = round(seconds * 24_000)
    rng = np.random.default_rng(round(seconds * 10))
    if kind == "random":  # int16-quantised, like decoded audio
        return (rng.integers(-32768, 32768, n) / 32768).astype(np.float32)
    t = np.arange(n) / 24_000  # a DTMF pair and a high tone, with some noise
    tone = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (697.0, 1209.0, 9_000.0))
    return (tone + 0.01 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("kind", ["random", "tonal"])
@pytest.mark.parametrize("seconds, frames", [(1.0, 99), (2.0, 199)])
def test_official_frontend_equals_python_speech_features_logfbank(kind, seconds, frames):
    waveform = _signal(kind, seconds)
    ours = official_log_filterbank(np.stack([waveform, 0.5 * waveform])).numpy()
    assert ours.shape == (2, 257, frames) and ours.dtype == np.float32
    assert num_spectrogram_frames(waveform.size, frontend="official") == frames
    for row, scale in zip(ours, (1.0, 0.5)):
        reference = _official_loader_spec(scale * waveform)
        # Measured: 1.8e-6, the float32 rounding of log(float64 eps) = -36.04 in empty bands.
        np.testing.assert_allclose(row, reference, rtol=0, atol=1e-4)


def test_official_frontend_pads_the_last_frame_like_logfbank():
    waveform = _signal("random", 2.0)[:24_100]  # not a whole number of hops: one padded frame
    ours = official_log_filterbank(waveform).numpy()
    assert ours.shape == (257, 100)
    np.testing.assert_allclose(ours, _official_loader_spec(waveform), rtol=0, atol=1e-4)


def test_official_filterbank_is_logfbanks_with_its_empty_bands():
    import python_speech_features

    ours = logfbank_filterbank(sample_rate=24_000, num_filters=257, fft_length=1024)
    reference = python_speech_features.get_filterbanks(257, 1024, 24_000)
    np.testing.assert_array_equal(ours.T, reference)
    assert int(np.sum(ours.sum(axis=0) == 0)) == 38  # spec §7: 38 of 257 bands empty
    # Silence: every band energy is exactly 0 → log(float64 eps), as in logfbank.
    silent = official_log_filterbank(np.zeros(24_000, np.float32)).numpy()
    np.testing.assert_allclose(silent, np.log(np.finfo(np.float64).eps), rtol=1e-6)
