"""Audio spectrograms, the one audio feature of stica_jax (pretraining and audio evaluation).

Two front ends, picked by `config.input.audio_frontend` (`spectrogram`):
- "stica": `log_mel_spectrogram`, `tf.signal`'s log-mel (Hann window, HTK mel matrix).
- "official": `official_log_filterbank`, `python_speech_features.logfbank` exactly as the
  official loader calls it (official `datasets/audio_utils.py`, spec §7), so that checkpoints of
  the official code read the features they were trained on.
"""

import numpy as np

from data_pipeline.audio_frontends import num_spectrogram_frames
from data_pipeline.tensorflow_cpu import tf


def log_mel_spectrogram(
    waveform: tf.Tensor,
    *,
    sample_rate: int = 24_000,
    num_mel_bins: int = 257,
    window_length: int = 480,
    hop_length: int = 240,
    fft_length: int = 1024,
    lower_edge_hz: float = 0.0,
    upper_edge_hz: float | None = None,
    log_offset: float = 1e-6,
) -> tf.Tensor:
    """Log mel filterbank energies, frequency first.

    Args:
      waveform: float `[..., N]` in [-1, 1].
      sample_rate: Hz of `waveform`.
      num_mel_bins: F, the number of mel bands (HTK mel scale, `tf.signal`).
      window_length: STFT window in samples (Hann), 480 = 20 ms at 24 kHz.
      hop_length: STFT hop in samples, 240 = 10 ms at 24 kHz.
      fft_length: FFT size; `fft_length // 2 + 1` linear bins feed the mel matrix.
      lower_edge_hz: lowest mel band edge.
      upper_edge_hz: highest mel band edge; None means Nyquist.
      log_offset: eps of `log(mel_power + eps)`, keeps silence finite.

    Returns:
      float32 `[..., F, T]`, `T = num_spectrogram_frames(N, ...)` (whole windows only: 2 s
      at 24 kHz -> `[257, 199]`, 1 s -> `[257, 99]`).
    """
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    stft = tf.signal.stft(
        waveform,
        frame_length=window_length,
        frame_step=hop_length,
        fft_length=fft_length,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )  # [..., T, fft_length // 2 + 1]
    power = tf.math.square(tf.math.abs(stft))
    mel_matrix = mel_weight_matrix(
        sample_rate=sample_rate,
        num_mel_bins=num_mel_bins,
        fft_length=fft_length,
        lower_edge_hz=lower_edge_hz,
        upper_edge_hz=upper_edge_hz,
    )  # [fft_length // 2 + 1, F]
    mel_power = tf.tensordot(power, mel_matrix, axes=1)  # [..., T, F]
    return tf.linalg.matrix_transpose(tf.math.log(mel_power + log_offset))


def mel_weight_matrix(
    *,
    sample_rate: int,
    num_mel_bins: int,
    fft_length: int,
    lower_edge_hz: float = 0.0,
    upper_edge_hz: float | None = None,
) -> tf.Tensor:
    """The `[fft_length // 2 + 1, F]` linear-to-mel matrix used by `log_mel_spectrogram`."""
    return tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=num_mel_bins,
        num_spectrogram_bins=fft_length // 2 + 1,
        sample_rate=sample_rate,
        lower_edge_hertz=lower_edge_hz,
        upper_edge_hertz=sample_rate / 2 if upper_edge_hz is None else upper_edge_hz,
    )


def logfbank_filterbank(
    *,
    sample_rate: int,
    num_filters: int,
    fft_length: int,
    lower_edge_hz: float = 0.0,
    upper_edge_hz: float | None = None,
) -> np.ndarray:
    """float64 `[fft_length // 2 + 1, F]`: `python_speech_features.get_filterbanks`, transposed.

    Triangles between mel points spaced evenly from `lower_edge_hz` to `upper_edge_hz` (HTK's
    `2595 log10(1 + f/700)`), their edges floored to FFT bins `floor((nfft + 1) f / sr)`; where
    two edges fall on one bin the band is empty (38 of 257 at 24 kHz, nfft 1024).
    """
    upper_edge_hz = sample_rate / 2 if upper_edge_hz is None else upper_edge_hz
    mels = np.linspace(
        2595 * np.log10(1 + lower_edge_hz / 700.0),
        2595 * np.log10(1 + upper_edge_hz / 700.0),
        num_filters + 2,
    )
    edges = np.floor((fft_length + 1) * (700 * (10 ** (mels / 2595.0) - 1)) / sample_rate)
    bins = np.arange(fft_length // 2 + 1, dtype=np.float64)[:, None]
    low, centre, high = edges[:-2], edges[1:-1], edges[2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((bins >= low) & (bins < centre), (bins - low) / (centre - low), 0.0)
        falling = np.where((bins >= centre) & (bins < high), (high - bins) / (high - centre), 0.0)
    return rising + falling


def official_log_filterbank(
    waveform: tf.Tensor,
    *,
    sample_rate: int = 24_000,
    num_filters: int = 257,
    window_length: int = 480,
    hop_length: int = 240,
    fft_length: int = 1024,
    preemphasis: float = 0.97,
) -> tf.Tensor:
    """`python_speech_features.logfbank` as the official loader calls it, frequency first.

    The official `datasets/audio_utils.py` reads int16 samples and calls `logfbank(wav, 24000,
    winlen=0.02, winstep=0.01, nfilt=257, nfft=1024)` (preemph 0.97 by default). That is, on the
    int16-scaled signal: 0.97 pre-emphasis `y[n] = x[n] - 0.97 x[n-1]`; rectangular frames,
    the end zero-padded to a whole frame; power `|rfft(frame, nfft)|² / nfft`; the floor-binned
    filterbank (`logfbank_filterbank`); `log`, with an exactly-zero band energy replaced by
    float64 eps. Computed in float64 as there, returned as float32. (The official 2-s specs are
    zero-padded to 199 frames; 2 s already gives 199 at these settings.)

    Args:
      waveform: float `[..., N]` in [-1, 1] (the pipeline's int16 / 32768), scaled back to int16
        units here.
    Returns:
      float32 `[..., F, T]`, `T = num_spectrogram_frames(N, ..., frontend="official")`.
    """
    x = tf.convert_to_tensor(waveform, tf.float32)
    x = tf.cast(x, tf.float64) * 32768.0
    x = tf.concat([x[..., :1], x[..., 1:] - preemphasis * x[..., :-1]], axis=-1)
    num_samples = x.shape[-1]
    num_frames = num_spectrogram_frames(
        num_samples, window_length=window_length, hop_length=hop_length, frontend="official"
    )
    pad = (num_frames - 1) * hop_length + window_length - num_samples
    x = tf.pad(x, [[0, 0]] * (x.shape.rank - 1) + [[0, pad]])
    frames = tf.signal.frame(x, window_length, hop_length)  # [..., T, window_length]
    power = tf.math.square(tf.math.abs(tf.signal.rfft(frames, [fft_length]))) / fft_length
    filters = logfbank_filterbank(
        sample_rate=sample_rate, num_filters=num_filters, fft_length=fft_length
    )
    energy = tf.tensordot(power, tf.constant(filters, tf.float64), axes=1)  # [..., T, F]
    energy = tf.where(energy == 0.0, tf.constant(np.finfo(np.float64).eps, tf.float64), energy)
    return tf.cast(tf.linalg.matrix_transpose(tf.math.log(energy)), tf.float32)
