"""AV-digits (spec §12): a small generated audio-visual dataset with real shared content.

Each clip shows one UCI handwritten digit (scikit-learn's `load_digits`, no download) moving and
bouncing over a smooth textured background of random colour; its sound is the DTMF tone pair of
that digit (ITU-T Q.23) in bursts that start when the digit bounces, over white noise and
continuous distractor tones of random pitch. The digit identity is the only thing sound and
picture share, and the bounces tie them in time. The label (the digit) is for evaluation only.
Train and test draw from disjoint handwriting samples.

The defaults are tuned so that the demo shows learning within minutes on a CPU (measurements in
docs/demo.md): the digit is large (70-85 % of the frame) and, on the dark backgrounds, always
bright, so a small video net can learn it within a few hundred steps; the distractor tones make
random-init audio features a poor digit probe (61 % instead of 98 %) while the tone bursts that
follow the picture stay learnable.

Generation is deterministic given `AvDigitsSpec.seed`: clip i of a split depends only on
(seed, split, i). The TFDS builder stores the clips exactly like the real datasets (JPEG frames
at 30 fps, int16 mono audio), so they go through the same tf.data path.
"""

import contextlib
import dataclasses
import itertools
import time
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from sklearn.datasets import load_digits  # scikit-learn ships the UCI digits.
from tensorflow_datasets.core.utils import tqdm_utils

from data_pipeline.data_dir import resolve_data_dir
from data_pipeline.media_builder import media_features
from data_pipeline.media_decode import encode_jpeg
from data_pipeline.tensorflow_cpu import tf  # before TFDS touches TF: hides the GPUs

# ITU-T Q.23 DTMF: (row, column) frequencies in Hz of each digit key.
DTMF_HZ = {
    1: (697, 1209),
    2: (697, 1336),
    3: (697, 1477),
    4: (770, 1209),
    5: (770, 1336),
    6: (770, 1477),
    7: (852, 1209),
    8: (852, 1336),
    9: (852, 1477),
    0: (941, 1336),
}


@dataclasses.dataclass(frozen=True)
class AvDigitsSpec:
    """Sizes of a generated AV-digits dataset; the defaults are the demo's."""

    num_train: int = 1500
    num_test: int = 300
    seconds: float = 2.5
    fps: int = 30
    frame_size: int = 64
    digit_scale: tuple[float, float] = (0.7, 0.85)  # digit side as a fraction of the frame side
    texture_contrast: float = 0.3  # peak-to-peak brightness swing of the background texture
    background_colour: tuple[float, float] = (
        0.05,
        0.45,
    )  # range of each RGB channel of the background
    speed: tuple[float, float] = (0.7, 1.5)  # pixels per frame at frame_size 64
    sample_rate: int = 24_000
    test_fraction: float = 0.3  # share of each digit's handwriting samples kept for test
    burst_seconds: float = 0.5
    noise_level: float = 0.05
    distractor_tones: int = (
        2  # continuous pure tones of random pitch (200-4000 Hz) under the bursts
    )
    distractor_level: tuple[float, float] = (0.1, 0.3)  # amplitude range of each distractor tone
    jpeg_quality: int = 90
    seed: int = 0

    def config_name(self) -> str:
        """A TFDS config name that differs whenever the generated data differ."""
        if self == AvDigitsSpec():
            return "default"

        def text(value) -> str:
            if isinstance(value, tuple):
                return "-".join(text(v) for v in value)
            return f"{value:g}" if isinstance(value, float) else str(value)

        return "custom_" + "_".join(text(value) for value in dataclasses.asdict(self).values())


def handwriting_pools(spec: AvDigitsSpec) -> dict[str, np.ndarray]:
    """'train'/'test' → disjoint indices into `load_digits()`, split per digit class.

    Returns:
      int `[n_split]` index arrays whose union is all 1,797 samples.
    """
    labels = load_digits().target
    rng = np.random.default_rng([spec.seed, 12345])
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        num_test = round(len(members) * spec.test_fraction)
        test.extend(members[:num_test])
        train.extend(members[num_test:])
    return {"train": np.sort(train), "test": np.sort(test)}


def _smooth_texture(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """float `[size, size]` in [0, 1]: random values on a coarse grid, bicubic-upsampled."""
    coarse = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return (
        np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32) / 255.0
    )


def render_clip(
    digit_image: np.ndarray, digit: int, rng: np.random.Generator, spec: AvDigitsSpec
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One clip of `digit` written as `digit_image`.

    Args:
      digit_image: float `[8, 8]` in [0, 16] (a `load_digits` image).
      digit: its label 0-9.
      rng: the clip's random generator.
      spec: sizes.

    Returns:
      (frames uint8 `[T, S, S, 3]`, audio int16 `[N]`, frame indices of the bounces).
    """
    size, num_frames = spec.frame_size, round(spec.seconds * spec.fps)
    background_colour = rng.uniform(*spec.background_colour, 3).astype(np.float32)
    texture = (
        1
        - spec.texture_contrast / 2
        + spec.texture_contrast * (_smooth_texture(rng, size, int(rng.integers(3, 9))) - 0.5)
    )
    background = np.clip(texture[..., None] * background_colour, 0, 1)
    # The digit contrasts with the background: bright on dark (always, with the default dark
    # backgrounds), dark on bright.
    bright = background_colour.mean() < 0.5
    digit_colour = rng.uniform(0.75, 1.0, 3) if bright else rng.uniform(0.0, 0.25, 3)
    low, high = spec.digit_scale
    digit_size = int(rng.integers(round(low * size), round(high * size) + 1))
    mask = (
        np.asarray(
            Image.fromarray((digit_image / 16 * 255).astype(np.uint8)).resize(
                (digit_size, digit_size), Image.BILINEAR
            ),
            np.float32,
        )[..., None]
        / 255.0
    )

    free = size - digit_size
    position = rng.uniform(0, free, 2)
    speed = rng.uniform(*spec.speed) * size / 64
    angle = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([np.sin(angle), np.cos(angle)])
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    bounces = []
    for index in range(num_frames):
        if index:
            position = position + velocity
            bounced = False
            for axis in range(2):
                if position[axis] < 0:
                    position[axis], velocity[axis], bounced = -position[axis], -velocity[axis], True
                elif position[axis] > free:
                    position[axis], velocity[axis], bounced = (
                        2 * free - position[axis],
                        -velocity[axis],
                        True,
                    )
            position = np.clip(position, 0, free)  # a step longer than the free space (huge digits)
            if bounced:
                bounces.append(index)
        y, x = np.round(position).astype(int)
        frame = background.copy()
        region = frame[y : y + digit_size, x : x + digit_size]
        region[...] = region * (1 - mask) + digit_colour * mask
        frames[index] = np.round(frame * 255)

    num_samples = round(spec.seconds * spec.sample_rate)
    audio = rng.normal(0.0, spec.noise_level, num_samples)
    burst_samples = round(spec.burst_seconds * spec.sample_rate)
    time = np.arange(burst_samples) / spec.sample_rate
    ramp = np.minimum(1.0, np.minimum(time, time[::-1]) / 0.005)  # 5-ms fades: no clicks
    # The tone sounds while any burst lasts: bursts of close bounces merge instead of adding up.
    envelope = np.zeros(num_samples)
    for frame_index in bounces:
        start = round(frame_index / spec.fps * spec.sample_rate)
        end = min(start + burst_samples, num_samples)
        envelope[start:end] = np.maximum(envelope[start:end], ramp[: end - start])
    clip_time = np.arange(num_samples) / spec.sample_rate
    row_hz, column_hz = DTMF_HZ[digit]
    loudness = rng.uniform(0.2, 0.35)
    audio += (
        loudness
        * envelope
        * (np.sin(2 * np.pi * row_hz * clip_time) + np.sin(2 * np.pi * column_hz * clip_time))
    )
    for _ in range(spec.distractor_tones):
        hz, amplitude, phase = (
            rng.uniform(200, 4000),
            rng.uniform(*spec.distractor_level),
            rng.uniform(0, 2 * np.pi),
        )
        audio += amplitude * np.sin(2 * np.pi * hz * clip_time + phase)
    audio /= max(
        1.0, np.abs(audio).max() / 0.99
    )  # a recording's gain: loud clips are turned down, never clipped
    audio = np.round(audio * 32767).astype(np.int16)
    return frames, audio, bounces


def generate_split(spec: AvDigitsSpec, split: str) -> Iterator[tuple[str, dict]]:
    """Yields (key, example) of `split` ('train' or 'test') in the stored-example layout."""
    digits = load_digits()
    pool = handwriting_pools(spec)[split]
    num_clips = spec.num_train if split == "train" else spec.num_test
    split_id = {"train": 0, "test": 1}[split]
    for clip_index in range(num_clips):
        rng = np.random.default_rng([spec.seed, split_id, clip_index])
        sample = int(pool[rng.integers(len(pool))])
        digit = int(digits.target[sample])
        frames, audio, _ = render_clip(digits.images[sample], digit, rng, spec)
        key = f"{split}_{clip_index:06d}"
        yield (
            key,
            {
                "id": f"{key}_handwriting{sample:04d}",
                "label": digit,
                "label_name": str(digit),
                "video": [encode_jpeg(frame, spec.jpeg_quality) for frame in frames],
                "audio": audio,
            },
        )


def features(spec: AvDigitsSpec) -> tfds.features.FeaturesDict:
    """The stored-example layout of AV-digits clips of `spec` (the real datasets' layout)."""
    return media_features(
        num_classes=10,
        label_names=[str(d) for d in range(10)],
        video=True,
        audio=True,
        sample_rate=spec.sample_rate,
    )


# Bytes a TFRecord adds to each record: its length (8) and two CRC-32Cs (4 + 4).
_TFRECORD_FRAMING = 16


def estimated_size_bytes(spec: AvDigitsSpec, sample_clips: int = 8) -> int:
    """Bytes the dataset of `spec` takes on disk, from the serialized size of its first clips.

    Every clip of a spec has the same length and frame size, so a few clips (rendered in well
    under a second) predict the whole: 400.7 MB predicted for the default spec's 400.5 MB.
    """
    sample = list(
        itertools.islice(generate_split(spec, "train"), min(sample_clips, spec.num_train))
    )
    if not sample:
        return 0
    layout = features(spec)
    per_clip = np.mean(
        [len(layout.serialize_example(example)) + _TFRECORD_FRAMING for _, example in sample]
    )
    return round(per_clip * (spec.num_train + spec.num_test))


def _megabytes(num_bytes: float) -> str:
    """Decimal megabytes to two significant digits: 400492939 → "400", 4213000 → "4.2"."""
    return f"{float(f'{num_bytes / 1e6:.2g}'):g}"


def _directory_bytes(path: str) -> int:
    return sum(
        tf.io.gfile.stat(tf.io.gfile.join(directory, name)).length
        for directory, _, names in tf.io.gfile.walk(path)
        for name in names
    )


@dataclasses.dataclass(eq=False)
class AvDigitsConfig(tfds.core.BuilderConfig):
    spec: AvDigitsSpec = AvDigitsSpec()


class AvDigits(tfds.core.GeneratorBasedBuilder):
    """TFDS builder of AV-digits: splits 'train' and 'test', no manual dir."""

    name = "av_digits"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.1.0": "Learnable in minutes: large bright digits on dark backgrounds, slower motion, "
        "0.5-s bursts that merge instead of adding up, two distractor tones, no clipping.",
        "1.0.0": "Initial release.",
    }
    BUILDER_CONFIGS = [AvDigitsConfig(name="default", description="The demo's default sizes.")]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=features(self.builder_config.spec), description=__doc__
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Everything is generated.
        spec = self.builder_config.spec
        return {split: generate_split(spec, split) for split in ("train", "test")}

    def _generate_examples(
        self,
    ):  # Required by the base class; the splits come from generate_split.
        raise NotImplementedError

    # TFDS prints "Downloading and preparing dataset Unknown size (download: Unknown size, ...)"
    # before generating, and "Dataset ... downloaded and prepared" after. Nothing is downloaded
    # here and the size is known: these two hooks say what is generated, where and how big.
    def _log_download_bytes(self) -> None:
        spec = self.builder_config.spec
        self._generation_start = time.perf_counter()
        print(
            f"generating AV-digits ({spec.num_train:,} train / {spec.num_test:,} test clips, "
            f"~{_megabytes(estimated_size_bytes(spec))} MB) into {self.data_dir} …",
            flush=True,
        )

    def _log_download_done(self) -> None:
        seconds = time.perf_counter() - getattr(self, "_generation_start", time.perf_counter())
        print(
            f"AV-digits ready: {_megabytes(_directory_bytes(self.data_dir))} MB written in "
            f"{seconds:.0f} s",
            flush=True,
        )


def builder_for(data_dir: str | None = None, spec: AvDigitsSpec | None = None) -> AvDigits:
    """The AV-digits builder of `spec` (default sizes when None) rooted at
    `resolve_data_dir(data_dir)` ($TFDS_DATA_DIR or ~/tensorflow_datasets when None)."""
    data_dir = resolve_data_dir(data_dir)
    spec = spec or AvDigitsSpec()
    if spec == AvDigitsSpec():
        return AvDigits(data_dir=data_dir)  # The registered default config.
    config = AvDigitsConfig(
        name=spec.config_name(), spec=spec, description="AV-digits with custom sizes."
    )
    return AvDigits(data_dir=data_dir, config=config)


@contextlib.contextmanager
def _without_tfds_progress_bars():
    """TFDS's nested generate / shuffle bars would bury the one line AV-digits prints."""
    shown = getattr(tqdm_utils, "_active", True)
    tfds.disable_progress_bar()
    try:
        yield
    finally:
        tfds.display_progress_bar(shown)


def ensure_prepared(data_dir: str | None = None, spec: AvDigitsSpec | None = None) -> AvDigits:
    """Generates and writes AV-digits under `resolve_data_dir(data_dir)` unless it is already
    there; returns its builder.

    The TFDS name to read it back is `av_digits` (default spec) or `av_digits/<spec.config_name()>`.
    """
    builder = builder_for(data_dir, spec)
    if not builder.is_prepared():
        with _without_tfds_progress_bars():
            builder.download_and_prepare()
    return builder
