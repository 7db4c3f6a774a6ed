"""AV-digits clips with the digit's box in every frame, as arrays or as an mp4 with sound.

`av_digits.render_clip` draws every random choice (background, colour, size, path, sound) from
its generator before and independently of the digit's pixels, so rendering the same generator
state with a blank digit gives the same clip without the digit: where the two differ is the ink.
"""

import numpy as np

from data_pipeline import av_digits
from data_pipeline.media_decode import write_test_media


def digit_image(index: int) -> tuple[np.ndarray, int]:
    """(float `[8, 8]` image in [0, 16], its digit) of a test-pool handwriting sample."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pool = av_digits.handwriting_pools(av_digits.AvDigitsSpec())["test"]
    sample = int(pool[index % len(pool)])
    return digits.images[sample], int(digits.target[sample])


def render(
    seed: int, spec: av_digits.AvDigitsSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(frames uint8 `[T, S, S, 3]`, audio int16 `[N]`, ink boxes int `[T, 4]` as
    (top, left, bottom, right) exclusive, digit) of clip `seed`."""
    image, digit = digit_image(seed)
    frames, audio, _ = av_digits.render_clip(image, digit, np.random.default_rng([7, seed]), spec)
    blank, blank_audio, _ = av_digits.render_clip(
        np.zeros_like(image), digit, np.random.default_rng([7, seed]), spec
    )
    assert np.array_equal(audio, blank_audio)  # the same draws: only the ink differs
    ink = np.abs(frames.astype(int) - blank.astype(int)).max(axis=-1) > 24
    boxes = []
    for mask in ink:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes.append((rows[0], cols[0], rows[-1] + 1, cols[-1] + 1))
    return frames, audio, np.array(boxes), digit


def side_by_side(
    left: tuple[np.ndarray, np.ndarray, np.ndarray, int],
    right: tuple[np.ndarray, np.ndarray, np.ndarray, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two rendered clips of the same spec in one picture: (frames uint8 `[T, S, 2S, 3]`, the
    left digit's boxes, the right digit's boxes moved to the right half), both `[T, 4]`."""
    frames = np.concatenate([left[0], right[0]], axis=2)
    shift = np.array([0, left[0].shape[2], 0, left[0].shape[2]])
    return frames, left[2], right[2] + shift


def write_mp4(path: str, frames: np.ndarray, audio: np.ndarray, spec: av_digits.AvDigitsSpec):
    """An H.264 + AAC mp4 of a rendered clip (what a user's video would be)."""
    write_test_media(
        path,
        frames=frames,
        fps=spec.fps,
        audio=audio.astype(np.float32) / 32768.0,
        sample_rate=spec.sample_rate,
    )
    return path
