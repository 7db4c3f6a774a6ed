"""Where datasets live (one rule for every reader and writer) and a dataset opened once."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipeline import av_digits, pipeline
from data_pipeline.data_dir import resolve_data_dir
from data_pipeline.datasets import DatasetNotPreparedError, open_dataset
from tests.data_pipeline.conftest import TINY_DIGITS


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """An empty home directory and no $TFDS_DATA_DIR, as on a newcomer's machine."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
    return home


def test_the_data_dir_is_the_value_else_tfds_data_dir_else_tfds_default(
    fresh_home, tmp_path, monkeypatch
):
    # TFDS's own rule, evaluated now (its DATA_DIR constant was fixed when it was imported).
    tfds_default = tfds.core.constants.get_default_data_dir()
    assert tfds_default == str(fresh_home / "tensorflow_datasets")
    assert resolve_data_dir() == resolve_data_dir(None) == resolve_data_dir("") == tfds_default

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "from_env"))
    assert tfds.core.constants.get_default_data_dir() == str(tmp_path / "from_env")
    assert resolve_data_dir() == resolve_data_dir("") == str(tmp_path / "from_env")

    assert resolve_data_dir(str(tmp_path / "explicit")) == str(tmp_path / "explicit")

    monkeypatch.setenv("TFDS_DATA_DIR", "")  # set but empty counts as unset
    assert resolve_data_dir() == tfds_default


def test_a_data_dir_comes_back_absolute_and_urls_unchanged(fresh_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("rel/tfds") == str(tmp_path / "rel" / "tfds")
    assert resolve_data_dir("~/data") == str(fresh_home / "data")
    monkeypatch.setenv("TFDS_DATA_DIR", "~/from_env")
    assert resolve_data_dir() == str(fresh_home / "from_env")
    assert resolve_data_dir("gs://bucket/tfds") == "gs://bucket/tfds"


def test_av_digits_without_a_data_dir_lands_in_the_tfds_default_not_the_current_dir(
    fresh_home, tmp_path, monkeypatch, capsys
):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    spec = av_digits.AvDigitsSpec(num_train=4, num_test=2, seconds=0.5, frame_size=16)
    builder = av_digits.ensure_prepared(None, spec)
    expected = fresh_home / "tensorflow_datasets" / "av_digits" / spec.config_name() / "1.1.0"
    assert os.fspath(builder.data_dir) == str(expected)
    assert (expected / "dataset_info.json").exists()
    assert os.listdir(cwd) == []
    # It reads back from the same default.
    opened = open_dataset(f"av_digits/{spec.config_name()}")
    assert opened.data_dir == str(fresh_home / "tensorflow_datasets")
    assert opened.split_sizes == {"train": 4, "test": 2}

    # What is generated, where and how big; TFDS's "Unknown size" banner is gone.
    out = capsys.readouterr().out
    assert out.startswith("generating AV-digits (4 train / 2 test clips, ~")
    assert f" MB) into {expected} …\n" in out
    assert "Downloading and preparing" not in out and "Unknown size" not in out
    assert "AV-digits ready:" in out
    # A second call finds it and prints nothing.
    av_digits.ensure_prepared(None, spec)
    assert capsys.readouterr().out == ""


def test_the_announced_size_is_the_size_on_disk(digits_dir):
    # TINY_DIGITS was written by the session fixture; its estimate comes from 8 rendered clips.
    written = sum(
        os.path.getsize(os.path.join(directory, name))
        for directory, _, names in os.walk(
            os.path.join(digits_dir, "av_digits", TINY_DIGITS.config_name())
        )
        for name in names
    )
    estimate = av_digits.estimated_size_bytes(TINY_DIGITS)
    assert estimate == pytest.approx(written, rel=0.03)


def test_a_prepared_dataset_holds_its_builder_sizes_and_classes(digits_dir, tiny_config):
    dataset = open_dataset(tiny_config.dataset, digits_dir)
    assert dataset.name == tiny_config.dataset
    assert dataset.data_dir == digits_dir
    assert dataset.split_sizes == {"train": TINY_DIGITS.num_train, "test": TINY_DIGITS.num_test}
    assert dataset.num_classes == 10
    assert dataset.num_examples("train[:50%]") == TINY_DIGITS.num_train // 2
    assert dataset.num_examples("train+test") == TINY_DIGITS.num_train + TINY_DIGITS.num_test

    # The pipeline reads the opened dataset as it reads the data dir.
    def first_batch(**source):
        batches = pipeline.make_dataset(
            tiny_config,
            "video_eval",
            split="test",
            batch_size_per_host=4,
            process_index=0,
            process_count=1,
            **source,
        )
        return next(batches)

    np.testing.assert_array_equal(
        first_batch(data_dir=digits_dir)["video"], first_batch(dataset=dataset)["video"]
    )
    with pytest.raises(ValueError, match="was given for config.dataset 'av_digits'$"):
        pipeline.make_dataset(
            dataclasses.replace(tiny_config, dataset="av_digits"),
            "video_eval",
            split="test",
            dataset=dataset,
            batch_size_per_host=4,
        )


@pytest.mark.parametrize(
    "name,hint",
    [
        (
            "stica_ucf101/fold1",
            r"prepare it with: python -m stica_jax\.prepare ucf101 --manual_dir=\S+ "
            r"--data_dir={data_dir}$",
        ),
        (
            "av_digits",
            r"prepare it with: python -m stica_jax\.prepare av_digits --data_dir={data_dir}$",
        ),
        ("av_digits/custom_1_2", r"generate it with data_pipeline\.av_digits\.ensure_prepared"),
        ("mnist_typo", r"no stica_jax builder makes it \(known: av_digits, stica_dcase2014"),
    ],
)
def test_an_unprepared_dataset_says_how_to_prepare_it(tmp_path, name, hint):
    with pytest.raises(DatasetNotPreparedError, match=hint.format(data_dir=tmp_path)) as error:
        open_dataset(name, str(tmp_path))
    assert str(error.value).startswith(f"dataset {name!r} is not prepared under {tmp_path}")
    assert "\n" not in str(error.value)
    assert os.listdir(tmp_path) == []  # looking wrote nothing
