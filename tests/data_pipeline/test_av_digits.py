import dataclasses
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from data_pipeline import av_digits
from tests.data_pipeline.conftest import TINY_DIGITS


def _first_examples(spec: av_digits.AvDigitsSpec, split: str, count: int) -> list[dict]:
    generator = av_digits.generate_split(spec, split)
    return [next(generator)[1] for _ in range(count)]


def test_generation_is_deterministic_given_the_seed():
    first, again = (
        _first_examples(TINY_DIGITS, "train", 2),
        _first_examples(TINY_DIGITS, "train", 2),
    )
    other_seed = _first_examples(
        av_digits.AvDigitsSpec(**{**TINY_DIGITS.__dict__, "seed": 4}), "train", 2
    )
    for a, b, c in zip(first, again, other_seed):
        assert (
            a["video"] == b["video"]
            and np.array_equal(a["audio"], b["audio"])
            and a["id"] == b["id"]
        )
        assert not np.array_equal(a["audio"], c["audio"])


def test_train_and_test_use_disjoint_handwriting_of_every_digit():
    pools = av_digits.handwriting_pools(TINY_DIGITS)
    assert not set(pools["train"]) & set(pools["test"])
    assert len(pools["train"]) + len(pools["test"]) == 1797
    from sklearn.datasets import load_digits

    labels = load_digits().target
    assert set(labels[pools["test"]]) == set(range(10))


def test_the_sound_is_the_digits_dtmf_pair_starting_at_each_bounce():
    from sklearn.datasets import load_digits

    digits = load_digits()
    spec = av_digits.AvDigitsSpec(seconds=2.0, frame_size=48, noise_level=0.02, distractor_tones=0)
    frames, audio, bounces = av_digits.render_clip(
        digits.images[7], 7, np.random.default_rng(0), spec
    )
    assert frames.shape == (60, 48, 48, 3) and audio.shape == (48_000,) and bounces
    burst = round(spec.burst_seconds * spec.sample_rate)
    start = round(bounces[0] / spec.fps * spec.sample_rate)
    spectrum = np.abs(np.fft.rfft(audio[start : start + burst].astype(np.float64)))
    hz = np.fft.rfftfreq(burst, 1 / spec.sample_rate)
    two_peaks = sorted(hz[np.argsort(spectrum)[-2:]])
    np.testing.assert_allclose(two_peaks, av_digits.DTMF_HZ[7], atol=10)
    # Before the first bounce there is only noise: far less energy.
    quiet = audio[: round(bounces[0] / spec.fps * spec.sample_rate)].astype(np.float64)
    if len(quiet) > 100:
        assert np.sqrt(np.mean(quiet**2)) < 0.5 * np.sqrt(
            np.mean(audio[start : start + burst].astype(np.float64) ** 2)
        )


def test_distractor_tones_are_two_steady_pitches_of_their_own_added_to_the_same_clip():
    from sklearn.datasets import load_digits

    image = load_digits().images[3]
    quiet = av_digits.AvDigitsSpec(seconds=2.0, frame_size=48, noise_level=0.02, distractor_tones=0)
    loud = dataclasses.replace(quiet, distractor_tones=2)
    frames0, audio0, bounces0 = av_digits.render_clip(image, 3, np.random.default_rng(1), quiet)
    frames2, audio2, bounces2 = av_digits.render_clip(image, 3, np.random.default_rng(1), loud)
    # Neither clip is turned down (peaks under 0.99): the two differ by the tones alone.
    assert (
        max(np.abs(audio0.astype(np.int32)).max(), np.abs(audio2.astype(np.int32)).max())
        < 0.99 * 32767
    )
    # Drawn after everything else: the picture, the bounces and the bursts do not change.
    np.testing.assert_array_equal(frames0, frames2)
    assert bounces0 == bounces2
    added = (audio2.astype(np.float64) - audio0) / 32767
    power = np.abs(np.fft.rfft(added * np.hanning(len(added)))) ** 2  # windowed: little leakage
    hz = np.fft.rfftfreq(len(added), 1 / quiet.sample_rate)
    near_peaks = np.zeros_like(hz, dtype=bool)
    for _ in range(2):  # the two strongest peaks, each with its ±5 Hz neighbourhood
        peak = hz[np.argmax(np.where(near_peaks, 0, power))]
        assert 200 <= peak <= 4000
        near_peaks |= np.abs(hz - peak) < 5
    assert power[near_peaks].sum() > 0.95 * power.sum()  # two pure tones, nothing else
    # They sound throughout: as loud in the first half as in the second.
    half = len(added) // 2
    np.testing.assert_allclose(np.std(added[:half]), np.std(added[half:]), rtol=0.1)


def test_bursts_of_close_bounces_merge_instead_of_adding_up_and_nothing_clips():
    from sklearn.datasets import load_digits

    digits = load_digits()
    # No noise, no distractors, fast bounces: the sound is loudness × envelope × the DTMF pair.
    spec = av_digits.AvDigitsSpec(
        seconds=2.0, frame_size=48, noise_level=0.0, distractor_tones=0, speed=(3.0, 3.5)
    )
    _, audio, bounces = av_digits.render_clip(digits.images[5], 5, np.random.default_rng(2), spec)
    assert min(np.diff(bounces)) / spec.fps < spec.burst_seconds  # some bursts overlap
    time = np.arange(len(audio)) / spec.sample_rate
    carrier = sum(np.sin(2 * np.pi * hz * time) for hz in av_digits.DTMF_HZ[5])
    steady = np.abs(carrier) > 0.5
    gain = audio[steady] / 32767 / carrier[steady]
    on = gain[gain > 0.05]
    assert len(on) > 0.3 * steady.sum()
    assert on.max() < 1.05 * np.median(on)  # overlaps are no louder than single bursts
    # The default (loud) clips are turned down as a whole, never clipped.
    peaks = []
    for seed in range(8):
        _, audio, _ = av_digits.render_clip(
            digits.images[seed],
            int(digits.target[seed]),
            np.random.default_rng(seed),
            av_digits.AvDigitsSpec(),
        )
        peaks.append(np.abs(audio.astype(np.int32)).max())
    assert max(peaks) == round(0.99 * 32767)  # some were turned down, to exactly 0.99 full scale


def test_the_prepared_dataset_loads_through_tfds_with_jpeg_frames_and_int16_audio(digits_dir):
    builder = av_digits.builder_for(digits_dir, TINY_DIGITS)
    assert builder.info.splits["train"].num_examples == 40
    assert builder.info.splits["test"].num_examples == 12
    example = next(
        iter(
            tfds.as_numpy(
                builder.as_dataset("test", decoders={"video": tfds.decode.SkipDecoding()})
            )
        )
    )
    assert example["video"].shape == (66,) and example["audio"].shape == (52_800,)
    assert example["audio"].dtype == np.int16 and 0 <= example["label"] < 10
    assert Image.open(io.BytesIO(example["video"][0])).size == (48, 48)
