"""Input shapes implied by a config (no TensorFlow needed)."""

from typing import Any

from data_pipeline.audio_frontends import num_spectrogram_frames


def spectrogram_frames(input_config: Any) -> int:
    """Frames of the spectrogram of the clip's audio (2 s → 199, 1 s → 99).

    `data_pipeline.audio_frontends.num_spectrogram_frames` of `audio_seconds` by the config's
    front end; a clip shorter than one window is an error.
    """
    samples = round(input_config.audio_seconds * input_config.sample_rate)
    window = input_config.window_length
    if samples < window:
        raise ValueError(
            f"{input_config.audio_seconds} s of audio is shorter than one {window}-sample window"
        )
    return num_spectrogram_frames(
        samples,
        window_length=window,
        hop_length=input_config.hop_length,
        frontend=getattr(input_config, "audio_frontend", "stica"),
    )


def input_shapes(input_config: Any, batch: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(video `[B, T, S, S, 3]`, audio `[B, F, T_spec, 1]`) shapes of one view and the audio."""
    s = input_config.crop_size
    video = (batch, input_config.num_frames, s, s, 3)
    audio = (batch, input_config.num_mel_bins, spectrogram_frames(input_config), 1)
    return video, audio


def train_batch_shapes(config: Any, batch: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """`{name: (shape, dtype)}` of a global train batch of `config.mode` (what the step takes).

    Pretraining: video1, video2 `[B, T, S, S, 3]`, audio `[B, F, T_spec, 1]`, index `[B]`;
    supervised: video `[B, T, S, S, 3]`, label `[B]`, index `[B]`.
    """
    video, audio = input_shapes(config.input, batch)
    if config.get("mode", "pretrain") == "supervised":
        return {
            "video": (video, "float32"),
            "label": ((batch,), "int32"),
            "index": ((batch,), "int32"),
        }
    return {
        "video1": (video, "float32"),
        "video2": (video, "float32"),
        "audio": (audio, "float32"),
        "index": ((batch,), "int32"),
    }
