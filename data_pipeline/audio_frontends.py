"""The audio front ends by name, and the shape of their spectrograms (no TensorFlow needed).

`config.input.audio_frontend` picks one (spec §7); `data_pipeline.audio_features` computes them:
- "stica": `tf.signal`'s log-mel, whole windows only (`tf.signal.stft(..., pad_end=False)`).
- "official": `python_speech_features.logfbank` as the official `datasets/audio_utils.py` calls
  it, the end zero-padded to a last whole window (`sigproc.framesig`).

Apart from `audio_features` so that config checks and the shapes computed ahead of the
features (the trainer's, the model summary's, the audio protocol's) import no TensorFlow.
"""

import math

AUDIO_FRONTENDS = ("stica", "official")


def check_audio_frontend(frontend: str, error: type[Exception] = ValueError) -> str:
    """`frontend` when it names a front end; else raises `error` with a one-line message.

    Args:
      frontend: a `config.input.audio_frontend` value.
      error: the exception to raise (the trainer's checks raise its `ConfigError`).
    """
    if frontend not in AUDIO_FRONTENDS:
        raise error(
            f"unknown input.audio_frontend {frontend!r}; expected one of {list(AUDIO_FRONTENDS)}"
        )
    return frontend


def num_spectrogram_frames(
    num_samples: int, *, window_length: int = 480, hop_length: int = 240, frontend: str = "stica"
) -> int:
    """Frames of `frontend`'s spectrogram of `num_samples` samples: 48000 -> 199, 24000 -> 99.

    "stica" frames only whole windows (none when `num_samples < window_length`); "official"
    zero-pads the end to a last whole window, as `python_speech_features.sigproc.framesig` does
    (one frame for any `num_samples <= window_length`; the same count as "stica" whenever the
    hop divides `num_samples - window_length`, e.g. every whole 10 ms at 24 kHz).
    """
    if frontend == "official":
        if num_samples <= window_length:
            return 1
        return 1 + math.ceil((num_samples - window_length) / hop_length)
    if num_samples < window_length:
        return 0
    return 1 + (num_samples - window_length) // hop_length
