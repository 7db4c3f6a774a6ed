"""Log-mel spectrogram: the one audio feature of stica_jax (pretraining and audio evaluation)."""

from data_pipeline.tensorflow_cpu import tf


def num_spectrogram_frames(
    num_samples: int, *, window_length: int = 480, hop_length: int = 240
) -> int:
    """Frames of `log_mel_spectrogram` for `num_samples` samples (no end padding): 48000 -> 199."""
    if num_samples < window_length:
        return 0
    return 1 + (num_samples - window_length) // hop_length


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
      float32 `[..., F, T]` with `T = 1 + (N - window_length) // hop_length`
      (2 s at 24 kHz -> `[257, 199]`, 1 s -> `[257, 99]`).
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
