"""Every builder prepares a fake dataset of real media files made here, honours its split files,
and reports each bad input with its reason."""

import csv
import os
import stat

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipeline import prepare as prepare_module
from data_pipeline.datasets import SplitNotPreparedError, load_builder, open_dataset
from data_pipeline.input_config import InputConfig
from data_pipeline.pipeline import make_dataset
from tests.data_pipeline import media_files


def _examples(builder, split: str) -> list[dict]:
    decoders = {"video": tfds.decode.SkipDecoding()} if "video" in builder.info.features else None
    return list(tfds.as_numpy(builder.as_dataset(split, decoders=decoders)))


def _ids(builder, split: str) -> set[str]:
    return {example["id"].decode() for example in _examples(builder, split)}


def _skip_report(path: str) -> dict[str, str]:
    with open(path) as file:
        return {row["file"]: row["reason"] for row in csv.DictReader(file, delimiter="\t")}


@pytest.fixture
def kinetics_manual_dir(tmp_path) -> tuple[str, dict[str, str]]:
    """3 good clips, the whole bad-input list, one row without a file; videos in nested folders."""
    manual = tmp_path / "manual"
    bad = media_files.write_bad_inputs(str(manual / "videos" / "bad"))
    rows = []
    for index, name in enumerate(bad):
        stem = f"bad{index:08d}"[:11]
        # Named like a Kinetics video whatever it really is (FFmpeg probes the content).
        os.rename(
            manual / "videos" / "bad" / name,
            manual / "videos" / "bad" / f"{stem}_000000_000010.mp4",
        )
        rows.append(("abseiling", stem, 0, 10, "train"))
    media_files.write_clip(
        str(manual / "videos" / "a" / "goodtrain01_000010_000020.mp4"), seconds=1.2
    )
    media_files.write_clip(
        str(manual / "videos" / "b" / "goodtrain02_000005_000015.mp4"), seconds=1.2, fps=25
    )
    media_files.write_clip(
        str(manual / "videos" / "goodvalid01_000000_000010.mp4"),
        seconds=1.2,
        sample_rate=44_100,
        channels=1,
    )
    rows += [
        ("abseiling", "goodtrain01", 10, 20, "train"),
        ("zumba", "goodtrain02", 5, 15, "train"),
        ("zumba", "goodvalid01", 0, 10, "validate"),
        ("zumba", "notdownload", 0, 10, "validate"),
    ]
    os.makedirs(manual / "annotations")
    for split in ("train", "validate"):
        with open(manual / "annotations" / f"{split}.csv", "w") as file:
            file.write("label,youtube_id,time_start,time_end,split\n")
            for row in rows:
                if row[4] == split:
                    file.write(",".join(map(str, row)) + "\n")
    expected_reasons = {}
    for index, reason in enumerate(bad.values()):
        stem = f"bad{index:08d}"[:11]
        expected_reasons[stem] = reason
    expected_reasons["notdownload"] = "missing_file"
    return str(manual), expected_reasons


def test_kinetics_prepares_good_clips_and_reports_every_bad_one(kinetics_manual_dir, tmp_path):
    manual_dir, expected_reasons = kinetics_manual_dir
    data_dir = str(tmp_path / "data")
    report = prepare_module.prepare(
        "kinetics400",
        manual_dir=manual_dir,
        data_dir=data_dir,
        num_workers=2,
        short_side=32,
        min_seconds=1.0,
    )
    builder = load_builder("stica_kinetics400/default_short_side32_min_seconds1", data_dir)
    assert builder.info.splits["train"].num_examples == 2
    assert builder.info.splits["validation"].num_examples == 1
    train = {e["id"].decode(): e for e in _examples(builder, "train")}
    assert set(train) == {
        "videos/a/goodtrain01_000010_000020.mp4",
        "videos/b/goodtrain02_000005_000015.mp4",
    }
    assert train["videos/a/goodtrain01_000010_000020.mp4"]["label_name"] == b"abseiling"
    assert train["videos/a/goodtrain01_000010_000020.mp4"]["label"] == 0
    assert train["videos/b/goodtrain02_000005_000015.mp4"]["label"] == 1
    assert (
        len(train["videos/b/goodtrain02_000005_000015.mp4"]["video"]) == 36
    )  # 1.2 s of 25 fps → 30 fps

    reported = _skip_report(report.report_files[0])
    by_stem = {os.path.basename(key).split("_")[0]: reason for key, reason in reported.items()}
    assert by_stem == expected_reasons
    assert sum(report.skipped.values()) == len(expected_reasons)

    # The prepared clips feed the pretraining pipeline.
    config = InputConfig(
        dataset="stica_kinetics400/default_short_side32_min_seconds1",
        num_frames=4,
        crop_size=16,
        blur_kernel_size=3,
        audio_seconds=1.0,
        num_mel_bins=32,
        chunk_size=1,
        group_size=2,
    )
    batch = next(
        make_dataset(
            config,
            "pretrain",
            split="train",
            data_dir=data_dir,
            batch_size_per_host=2,
            seed=0,
            process_index=0,
            process_count=1,
        )
    )
    assert batch["video1"].shape == (2, 4, 16, 16, 3) and batch["audio"].shape == (2, 32, 99, 1)


def test_preparation_resumes_and_shards_without_decoding_twice(kinetics_manual_dir, tmp_path):
    manual_dir, expected_reasons = kinetics_manual_dir
    data_dir = str(tmp_path / "data")
    options = dict(
        manual_dir=manual_dir, data_dir=data_dir, num_workers=1, short_side=32, min_seconds=1.0
    )
    total = 3 + len(expected_reasons)
    first = prepare_module.prepare("kinetics400", shard_index=0, num_shards=2, **options)
    second = prepare_module.prepare("kinetics400", shard_index=1, num_shards=2, **options)
    assert (
        first.decoded_now + second.decoded_now == total
        and first.decoded_now > 0
        and second.decoded_now > 0
    )
    assert not first.examples  # shards only decode
    final = prepare_module.prepare("kinetics400", **options)
    assert final.decoded_now == 0
    assert final.examples["default_short_side32_min_seconds1"] == {"train": 2, "validation": 1}


def _kinetics_layout(manual, rows: list[tuple[str, str, str]]) -> None:
    """Annotation CSVs for (youtube_id, split, label) rows, each clip 0-10 s."""
    os.makedirs(manual / "annotations", exist_ok=True)
    for split in ("train", "validate"):
        with open(manual / "annotations" / f"{split}.csv", "w") as file:
            file.write("label,youtube_id,time_start,time_end,split\n")
            for youtube_id, row_split, label in rows:
                if row_split == split:
                    file.write(f"{label},{youtube_id},0,10,{split}\n")


def _summary_rows(out: str) -> dict[str, list[str]]:
    """The per-split rows of `prepare`'s summary table: split → its cells."""
    lines = out.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split()[:3] == ["split", "listed", "prepared"]
    )
    rows = {}
    for line in lines[header + 1 :]:
        if not line.startswith("  ") or line.strip().startswith(("(", "every")):
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def test_a_partial_download_prepares_the_splits_it_has(tmp_path, capsys):
    """Validation not downloaded yet, train in mixed containers with one silent track: train is
    prepared, validation left out and named when asked for; once its file is there, preparing
    again writes it."""
    manual = tmp_path / "manual"
    for youtube_id, suffix in (
        ("trainmov001", "mov"),
        ("trainmkv001", "mkv"),
        ("trainweb001", "webm"),
    ):
        media_files.write_clip(
            str(manual / "train" / f"{youtube_id}_000000_000010.{suffix}"), seconds=1.2
        )
    media_files.write_clip(
        str(manual / "train" / "trainsil001_000000_000010.mp4"), seconds=1.2, audio_amplitude=0
    )
    rows = [
        (i, "train", "abseiling")
        for i in ("trainmov001", "trainmkv001", "trainweb001", "trainsil001")
    ]
    rows += [("validat0001", "validate", "abseiling"), ("validat0002", "validate", "zumba")]
    _kinetics_layout(manual, rows)
    data_dir = str(tmp_path / "data")
    options = dict(
        manual_dir=str(manual), data_dir=data_dir, num_workers=1, short_side=32, min_seconds=1.0
    )
    name = "stica_kinetics400/default_short_side32_min_seconds1"

    report = prepare_module.prepare("kinetics400", **options)
    assert report.examples == {"default_short_side32_min_seconds1": {"train": 3}}
    summary = _summary_rows(capsys.readouterr().out)
    # listed, prepared, missing, no audio, silent, too short, undecodable, other
    assert summary["train"] == ["4", "3", "0", "0", "1", "0", "0", "0"]
    assert summary["validation"][:3] == ["2", "0", "2"] and "left out" in " ".join(
        summary["validation"]
    )
    assert stat.S_IMODE(os.stat(report.report_files[0]).st_mode) == 0o644  # umask 022 (conftest)
    reported = _skip_report(report.report_files[0])
    assert reported == {
        "train/trainsil001_000000_000010.mp4": "silent_audio",
        "validat0001_000000_000010.mp4": "missing_file",
        "validat0002_000000_000010.mp4": "missing_file",
    }
    dataset = open_dataset(name, data_dir)
    assert _ids(dataset.builder, "train") == {
        "train/trainmov001_000000_000010.mov",
        "train/trainmkv001_000000_000010.mkv",
        "train/trainweb001_000000_000010.webm",
    }
    with pytest.raises(SplitNotPreparedError) as error:
        dataset.num_examples("validation")
    message = str(error.value)
    assert "\n" not in message and "has no split 'validation' (prepared: train)" in message
    assert "python -m stica_jax.prepare kinetics400 --manual_dir=" in message
    assert report.report_files[0] in message

    media_files.write_clip(
        str(manual / "validation" / "validat0001_000000_000010.mp4"), seconds=1.2
    )
    again = prepare_module.prepare("kinetics400", **options)
    assert again.examples == {"default_short_side32_min_seconds1": {"train": 3, "validation": 1}}
    assert open_dataset(name, data_dir).num_examples("validation") == 1


def _write_ucf(manual) -> None:
    classes = ["ApplyEyeMakeup", "Basketball"]
    lists = manual / "ucfTrainTestlist"
    os.makedirs(lists)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    for c in classes:
        for group in (1, 8):
            # Listed as .avi; one is an .mkv (a re-encode) with a track of digital silence.
            odd = c == "ApplyEyeMakeup" and group == 8
            media_files.write_clip(
                str(manual / "UCF-101" / c / f"v_{c}_g{group:02d}_c01.{'mkv' if odd else 'avi'}"),
                seconds=1.1,
                audio_hz=None if c == "Basketball" else 440.0,
                audio_amplitude=0.0 if odd else 0.5,
            )
    for fold, test_group, train_group in ((1, 1, 8), (2, 8, 1), (3, 1, 8)):
        (lists / f"trainlist0{fold}.txt").write_text(
            "".join(
                f"{c}/v_{c}_g{train_group:02d}_c01.avi {i + 1}\n" for i, c in enumerate(classes)
            )
        )
        (lists / f"testlist0{fold}.txt").write_text(
            "".join(f"{c}/v_{c}_g{test_group:02d}_c01.avi\n" for c in classes)
        )


def test_ucf101_folds_follow_the_official_lists(tmp_path):
    manual = tmp_path / "manual"
    _write_ucf(manual)
    data_dir = str(tmp_path / "data")
    prepare_module.prepare(
        "ucf101", manual_dir=str(manual), data_dir=data_dir, num_workers=1, short_side=32
    )
    fold1 = load_builder("stica_ucf101/fold1_short_side32", data_dir)
    fold2 = load_builder("stica_ucf101/fold2_short_side32", data_dir)
    assert _ids(fold1, "test") == {
        "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        "UCF-101/Basketball/v_Basketball_g01_c01.avi",
    }
    assert _ids(fold2, "test") == _ids(fold1, "train")
    examples = {e["id"].decode(): e for e in _examples(fold1, "test")}
    with_audio = examples["UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"]
    assert (
        with_audio["label"] == 0
        and with_audio["audio"].size > 20_000
        and np.abs(with_audio["audio"]).max() > 1000
    )
    without_audio = examples["UCF-101/Basketball/v_Basketball_g01_c01.avi"]
    assert without_audio["label"] == 1 and without_audio["audio"].size == 0  # UCF audio is optional
    # Found by its stem in another container; its silent track kept as no audio, and reported.
    train = {e["id"].decode(): e for e in _examples(fold1, "train")}
    silent = train["UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.mkv"]
    assert silent["label"] == 0 and silent["audio"].size == 0 and len(silent["video"]) == 33
    reported = _skip_report(os.path.join(fold1.data_dir, "skipped_files.tsv"))
    assert reported == {"UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.mkv": "silent_audio_kept"}


def test_hmdb51_splits_use_codes_1_and_2_and_drop_0(tmp_path):
    manual = tmp_path / "manual"
    splits = manual / "testTrainMulti_7030_splits"
    os.makedirs(splits)
    for c in ("brush_hair", "wave"):
        for v in range(3):
            suffix = "mp4" if (c, v) == ("wave", 0) else "avi"  # listed as .avi all the same
            media_files.write_clip(
                str(manual / "hmdb51_org" / c / f"{c}_{v}.{suffix}"), seconds=1.1, audio_hz=None
            )
        for fold in (1, 2, 3):
            (splits / f"{c}_test_split{fold}.txt").write_text(
                f"{c}_0.avi 1 \n{c}_1.avi 2 \n{c}_2.avi 0 \n"
            )
    data_dir = str(tmp_path / "data")
    prepare_module.prepare(
        "hmdb51",
        manual_dir=str(manual),
        data_dir=data_dir,
        num_workers=1,
        short_side=32,
        config="fold2",
    )
    builder = load_builder("stica_hmdb51/fold2_short_side32", data_dir)
    assert _ids(builder, "train") == {
        "hmdb51_org/brush_hair/brush_hair_0.avi",
        "hmdb51_org/wave/wave_0.mp4",
    }
    assert _ids(builder, "test") == {
        "hmdb51_org/brush_hair/brush_hair_1.avi",
        "hmdb51_org/wave/wave_1.avi",
    }
    assert "audio" not in builder.info.features  # video only


def test_esc50_folds_are_splits_and_audio_eval_reads_them(tmp_path, monkeypatch):
    # Prepared and read without a data dir: both find $TFDS_DATA_DIR, and nothing lands in the
    # current directory.
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    manual = tmp_path / "manual" / "ESC-50-master"
    os.makedirs(manual / "meta")
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        name = f"{fold}-100-A-{fold}.wav"
        media_files.write_wav(
            str(manual / "audio" / name),
            seconds=2.5,
            hz=300.0 * fold,
            sample_rate=44_100,
            channels=1,
        )
        rows.append(f"{name},{fold},{fold * 3},class{fold},False,100,A")
    (manual / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    prepare_module.prepare("esc50", manual_dir=str(tmp_path / "manual"), num_workers=1)
    assert os.listdir(tmp_path / "cwd") == []
    builder = load_builder("stica_esc50")
    assert os.fspath(builder.data_dir).startswith(str(tmp_path / "data" / "stica_esc50"))
    (fold3,) = _examples(builder, "fold3")
    assert fold3["label"] == 9 and fold3["label_name"] == b"class3" and "video" not in fold3
    assert builder.info.splits["fold1+fold2+fold4+fold5"].num_examples == 4
    config = InputConfig(
        dataset="stica_esc50", num_mel_bins=64, audio_eval_subclips=10, audio_eval_seconds=2.0
    )
    batch = next(
        make_dataset(
            config,
            "audio_eval",
            split="fold3",
            batch_size_per_host=1,
            process_index=0,
            process_count=1,
        )
    )
    assert batch["audio"].shape == (1, 10, 64, 199, 1) and batch["label"][0] == 9


def test_dcase2014_labels_come_from_the_scene_file_names(tmp_path):
    manual = tmp_path / "manual"
    media_files.write_wav(str(manual / "scenes_stereo" / "bus01.wav"), seconds=1.5)
    media_files.write_wav(str(manual / "scenes_stereo" / "park07.wav"), seconds=1.5)
    media_files.write_wav(str(manual / "scenes_stereo_testset" / "tubestation03.wav"), seconds=1.5)
    media_files.write_wav(
        str(manual / "scenes_stereo_testset" / "office02.wav"), seconds=0.5
    )  # too short
    data_dir = str(tmp_path / "data")
    report = prepare_module.prepare(
        "dcase2014", manual_dir=str(manual), data_dir=data_dir, num_workers=1
    )
    builder = load_builder("stica_dcase2014", data_dir)
    labels = {e["id"].decode(): e["label_name"].decode() for e in _examples(builder, "train")}
    assert labels == {"scenes_stereo/bus01.wav": "bus", "scenes_stereo/park07.wav": "park"}
    assert [e["label_name"] for e in _examples(builder, "test")] == [b"tubestation"]
    assert _skip_report(report.report_files[0]) == {
        "scenes_stereo_testset/office02.wav": "too_short"
    }
