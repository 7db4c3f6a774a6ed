"""The results.json schema shared by every protocol: statistics, files, errors."""

import json
import os

import numpy as np
import pytest

from stica_jax.evaluate import results as results_lib

FOLDS = {
    1: {"top1": 67.3, "top5": 91.0, "best_epoch_top1": 68.1, "best_epoch": 10},
    3: {"top1": 65.0, "top5": 90.0, "best_epoch_top1": 66.0, "best_epoch": 9},
    2: {"top1": 70.1, "top5": 92.5, "best_epoch_top1": 70.1, "best_epoch": 11},
}


def finetune_results():
    return results_lib.make_results(
        protocol="finetune",
        dataset=results_lib.dataset_name("stica_hmdb51/fold1"),
        init={"kind": "workdir", "source": "/ckpt/run1", "step": 1000},
        metrics=["top1", "top5"],
        folds=FOLDS,
        config={"seed": 0},
    )


def test_mean_and_population_std_over_the_folds():
    results = finetune_results()
    assert list(results["folds"]) == ["1", "2", "3"]  # string keys, in fold order
    for metric in ("top1", "top5"):
        values = [FOLDS[k][metric] for k in (1, 2, 3)]
        assert results["mean"][metric] == pytest.approx(np.mean(values), abs=1e-12)
        assert results["std"][metric] == pytest.approx(np.std(values), abs=1e-12)  # ddof 0
    assert "best_epoch_top1" not in results["mean"]  # only the declared metrics
    one = results_lib.make_results(
        protocol="audio",
        dataset="dcase2014",
        init={"kind": "random"},
        metrics=["top1"],
        folds={1: {"top1": 90.0}},
        config={},
    )
    assert one["std"] == {"top1": 0.0} and one["init"] == {
        "kind": "random",
        "source": "",
        "step": None,
    }


def test_schema_fields_and_names():
    results = finetune_results()
    assert set(results) == {
        "protocol",
        "dataset",
        "init",
        "metrics",
        "folds",
        "mean",
        "std",
        "config",
    }
    assert results["dataset"] == "hmdb51"
    assert results_lib.dataset_name("stica_esc50") == "esc50"
    assert results_lib.dataset_name("av_digits/default") == "av_digits"
    with pytest.raises(ValueError, match="fold 1 lacks metrics \\['top5'\\]"):
        results_lib.make_results(
            protocol="linear",
            dataset="ucf101",
            init={"kind": "torch", "source": "r2plus1d.pth"},
            metrics=["top1", "top5"],
            folds={1: {"top1": 1.0}},
            config={},
        )
    with pytest.raises(ValueError, match="unknown protocol"):
        results_lib.make_results(
            protocol="svm", dataset="x", init={"kind": "random"}, metrics=[], folds={}, config={}
        )


def test_written_results_read_back_and_fold_files_resume(tmp_path):
    results = finetune_results()
    path = results_lib.write_results(str(tmp_path), results)
    assert json.load(open(path)) == results
    assert results_lib.read_results(str(tmp_path)) == results
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    assert results_lib.read_fold(str(tmp_path), 2) is None
    results_lib.write_fold(str(tmp_path), 2, {"top1": 50.0}, {"train_clips": 10})
    assert results_lib.read_fold(str(tmp_path), 2) == {"top1": 50.0}
    assert json.load(open(tmp_path / "fold2" / "result.json"))["details"] == {"train_clips": 10}


def test_unreadable_results_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(results_lib.ResultsError, match="results.json not found") as error:
        results_lib.read_results(str(tmp_path))
    assert "\n" not in str(error.value)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(results_lib.ResultsError, match="not readable JSON") as error:
        results_lib.read_results(str(tmp_path))
    assert "\n" not in str(error.value)
    broken = finetune_results()
    del broken["folds"]["2"]["top5"]
    (tmp_path / "results.json").write_text(json.dumps(broken))
    with pytest.raises(results_lib.ResultsError, match="fold 2 lacks a number"):
        results_lib.read_results(str(tmp_path))


def test_summary_line():
    assert results_lib.summary_line(finetune_results()) == (
        "finetune hmdb51: top1 67.5 ± 2.1, top5 91.2 ± 1.0 over 3 folds"
    )
