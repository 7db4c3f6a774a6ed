import numpy as np
import pytest

from data_pipeline.audio_features import (
    log_mel_spectrogram,
    mel_weight_matrix,
    num_spectrogram_frames,
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
