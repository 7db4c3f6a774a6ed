"""Tiny fake evaluation datasets made of real media files (the data_pipeline test fixtures)."""

import csv
import os

import pytest

from tests.data_pipeline import media_files

# ESC-50 in miniature: in every official fold, one clip of class 0 (a low tone), one of class 1
# (a high tone) and one "marker" clip of class 1 + fold (a middle tone) that exists only in that
# fold. A classifier can learn classes 0 and 1 from any four folds, never the held-out fold's
# marker: with the folds assembled right, every fold's top-1 is exactly 2/3.
ESC50_TONES_HZ = {0: 400.0, 1: 3000.0}
ESC50_MARKER_HZ = 1200.0


def esc50_rows() -> list[dict[str, str]]:
    """The fake `esc50.csv` rows: filename, fold, target, category (as the official file)."""
    rows = []
    for fold in range(1, 6):
        for clip, target in enumerate((0, 1, 1 + fold)):
            rows.append(
                dict(
                    filename=f"{fold}-{100 + clip}-A-{target}.wav",
                    fold=str(fold),
                    target=str(target),
                    category=f"class{target}",
                )
            )
    return rows


@pytest.fixture(scope="session")
def esc50_dir(tmp_path_factory) -> str:
    """A TFDS data dir holding the fake ESC-50 (`stica_esc50`, splits fold1..fold5)."""
    from data_pipeline import prepare

    root = tmp_path_factory.mktemp("esc50")
    manual = root / "manual" / "ESC-50-master"
    os.makedirs(manual / "meta")
    rows = esc50_rows()
    for row in rows:
        target = int(row["target"])
        media_files.write_wav(
            str(manual / "audio" / row["filename"]),
            seconds=2.5,
            hz=ESC50_TONES_HZ.get(target, ESC50_MARKER_HZ),
            sample_rate=44_100,
            channels=1,
        )
    with open(manual / "meta" / "esc50.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["filename", "fold", "target", "category"])
        writer.writeheader()
        writer.writerows(rows)
    data_dir = str(root / "data")
    prepare.prepare("esc50", manual_dir=str(root / "manual"), data_dir=data_dir, num_workers=1)
    return data_dir


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> str:
    """A TFDS data dir holding the tiny AV-digits of the data_pipeline tests (40 train / 12 test
    clips, 48² frames): a one-fold video dataset with 10 classes."""
    from data_pipeline import av_digits
    from tests.data_pipeline.conftest import TINY_DIGITS

    data_dir = str(tmp_path_factory.mktemp("digits"))
    av_digits.ensure_prepared(data_dir, TINY_DIGITS)
    return data_dir


def tiny_digits_name() -> str:
    from tests.data_pipeline.conftest import TINY_DIGITS

    return f"av_digits/{TINY_DIGITS.config_name()}"
