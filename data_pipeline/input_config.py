"""What the input pipeline reads from a config: `InputConfig`.

The per-view augmentation's fields (crop size, crop scale and ratio, colour jitter, blur,
normalisation) are `augment.AugmentConfig`'s, inherited, so each is declared once; the clip,
audio, evaluation and reading fields are added here.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

from data_pipeline.audio_frontends import num_spectrogram_frames
from data_pipeline.augment import AugmentConfig


@dataclasses.dataclass(frozen=True)
class InputConfig(AugmentConfig):
    """Everything the pipeline reads from a config; defaults are the SOTA setting (spec §7, §10).

    Per-view augmentation (spec §7): the fields of `AugmentConfig`, with its defaults.
    """

    dataset: str = "stica_kinetics400"  # TFDS name[/config], e.g. "av_digits", "stica_ucf101/fold1"
    # Video clip.
    num_frames: int = 60
    frame_stride: int = 1  # take every k-th 30-fps frame (a clip spans (T - 1) * k + 1 frames)
    fps: float = 30.0  # frame rate of the stored frames (what preparation wrote)
    # Audio.
    audio_frontend: str = "stica"  # or "official" (audio_features: logfbank as the official loader)
    audio_seconds: float = 2.0
    sample_rate: int = 24_000
    num_mel_bins: int = 257
    window_length: int = 480
    hop_length: int = 240
    fft_length: int = 1024
    volume_jitter: tuple[float, float] = (0.9, 1.1)
    # Evaluation (spec §10).
    eval_clips: int = 10
    eval_crops: int = 3
    eval_short_side: int = 128  # frames are resized to this short side before the S×S crops
    audio_eval_subclips: int = 10  # ESC-50: 10 × 2 s; DCASE2014: 60 × 1 s
    audio_eval_seconds: float = 2.0
    # Reading.
    chunk_size: int = 16  # consecutive records per chunk (the unit of host sharding)
    group_size: int = 16  # chunks read at once, records interleaved round-robin
    prefetch_batches: int = 2
    # Records parsed, decoded and augmented at once; 0 = one per CPU core this process may use.
    # A fixed number, not tf.data.AUTOTUNE: with a tunable parallelism, deleting an iterator
    # whose host CPU had been busy (XLA on the CPU, a neighbour's job) blocked for 27-38 s
    # doing nothing (TF 2.21, measured at the end of every training run and evaluation pass);
    # with nothing left to tune it takes milliseconds. One per core is the ceiling AUTOTUNE
    # climbs to when the consumer waits for input.
    num_parallel_calls: int = 0

    @classmethod
    def from_any(cls, config: Any) -> "InputConfig":
        """From an InputConfig, a dataclass, an `ml_collections.ConfigDict` or a mapping.

        Only the fields of InputConfig are read; the others (model, optimiser...) are ignored.
        """
        if isinstance(config, cls):
            return config
        if dataclasses.is_dataclass(config):
            config = dataclasses.asdict(config)
        elif not isinstance(config, Mapping):
            config = dict(config)  # ConfigDict
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in config:
                value = config[field.name]
                values[field.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def augment_config(self) -> AugmentConfig:
        """The augmentation fields alone, as `augment.augment_clip` takes them."""
        names = {field.name for field in dataclasses.fields(AugmentConfig)}
        return AugmentConfig(**{name: getattr(self, name) for name in names})

    @property
    def audio_samples(self) -> int:
        return round(self.audio_seconds * self.sample_rate)

    @property
    def spectrogram_frames(self) -> int:
        return num_spectrogram_frames(
            self.audio_samples,
            window_length=self.window_length,
            hop_length=self.hop_length,
            frontend=self.audio_frontend,
        )
