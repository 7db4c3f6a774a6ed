"""`python -m stica_jax.ablate`: variants, the table's arithmetic, a real run, one-line errors."""

import json
import os

import numpy as np
import pytest

from configs import demo, sota
from stica_jax import ablation, config_checks
from tests import tiny_runs
from tests.command_line import newcomer_dirs, run_fresh

TINY = tiny_runs.CONFIG


def test_default_variants_are_the_five_ablations_opposite_to_the_baseline():
    assert ablation.default_variants(demo.get_config()) == [
        "avg_pooling",
        "no_crops",
        "all_pairs",
        "attached_keys",
        "long_clips",
    ]
    spec_reading = sota.get_config()
    spec_reading.loss.crop_pairs, spec_reading.loss.detach_keys = "all", False
    spec_reading.model.pooling = "avg"
    assert ablation.default_variants(spec_reading) == [
        "transformer_pooling",
        "no_crops",
        "official_pairs",
        "detached_keys",
        "long_clips",
    ]


def test_long_clips_double_the_clip_and_its_map_and_still_run():
    """The demo's 60-frame equivalent: twice the frames and audio, T' 2 → 4, time crops × 2."""
    base = demo.get_config()
    configs = ablation.plan(base, ["long_clips"], seeds=1)
    long = configs["long_clips"]
    assert config_checks.video_map_shape(base)[0] * 2 == config_checks.video_map_shape(long)[0] == 4
    assert (long.input.num_frames, long.input.audio_seconds) == (32, 2.0)
    assert long.crops.time_large == 2 * base.crops.time_large
    assert ablation.changes(base, long) == (
        "crops.time_large=2 input.audio_seconds=2.0 input.num_frames=32"
    )


def test_the_table_is_mean_and_sample_std_over_seeds_beside_the_baseline():
    configs = ablation.variant_configs(demo.get_config(), ["no_crops"])

    def run(video, audio, init=None):
        probe = {"trained": {"video": video, "audio": audio}}
        if init:
            probe["random init"] = {"video": init[0], "audio": init[1]}
        return {"probe": probe, "wall_seconds": 1.0}

    results = {
        "baseline": [run(80.0, 70.0, (50.0, 40.0)), run(84.0, 74.0, (52.0, 40.0))],
        "no_crops": [run(60.0, 71.0), run(70.0, 75.0)],
    }
    lines = ablation.format_table(configs, results, "header").splitlines()
    # baseline: video mean 82, sample std sqrt(8) = 2.83; no_crops: 65 ± 7.07, Δ -17.0 / +1.0.
    assert lines[2].split() == ["baseline", "82.0", "±", "2.8", "72.0", "±", "2.8"] + [
        "(the",
        "config",
        "as",
        "given)",
    ]
    assert lines[3].split()[:9] == ["no_crops", "65.0", "±", "7.1", "73.0", "±", "2.8"] + [
        "-17.0",
        "+1.0",
    ]
    assert lines[3].endswith("crops.enabled=False")
    assert lines[4].split()[:9] == ["random", "init", "51.0", "±", "1.4", "40.0", "±", "0.0"] + [
        "-31.0"
    ]


@pytest.mark.parametrize(
    "names, seeds, message",
    [
        (["no_crops", "no_crops"], 1, "variant 'no_crops' is given twice"),
        (["all_pairs"], 1, "variant 'all_pairs' changes nothing: the baseline config has it"),
        (["no_crops"], 0, "--seeds=0 must be at least 1"),
        # One large crop per family: "all" pairs it with itself across views, the official
        # pairing has no crop index 1 and no small crop, so nothing to contrast.
        (["official_pairs"], 1, "official_pairs: loss.crop_pairs='official' contrasts none"),
    ],
)
def test_a_plan_that_cannot_run_is_refused_before_any_training(names, seeds, message):
    config = demo.get_config()
    config.loss.crop_pairs = "all"  # the spec's reading; "official_pairs" is then a variant
    config.crops.n_space_large = config.crops.n_time_large = 1
    with pytest.raises(ablation.AblationError, match=message):
        ablation.plan(config, names, seeds)


def _run_cli(args, tmp_path, env=None):
    """`python -m stica_jax.ablate ARGS` in an empty directory with an empty HOME."""
    home, cwd = newcomer_dirs(tmp_path)
    return run_fresh(
        ["-m", "stica_jax.ablate", *args], home=str(home), cwd=str(cwd), env=env, timeout=1200
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variants=max_pooling"], "unknown variant 'max_pooling'; expected some of"),
        (["--seeds=two"], "flag --seeds=two: invalid literal for int()"),
        (["--config.loss.crop_pairs=some"], "baseline: unknown loss.crop_pairs 'some'"),
        (["--config.loss.pairs=all"], "--config.loss.pairs: the config has no such field"),
    ],
)
def test_user_errors_are_one_line_with_status_2(args, message, tmp_path):
    result = _run_cli([f"--config={TINY}", f"--workdir={tmp_path / 'w'}", *args], tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"stica_jax.ablate: error: {message}"), lines
    assert not os.listdir(tmp_path / "cwd")  # nothing written where it was run


@pytest.mark.slow
def test_a_tiny_ablation_trains_each_run_and_prints_what_they_measured(trained, tmp_path):
    # The session's tiny data, and its run's environment: the baseline then compiles the very
    # train step of the session's trained workdir, which the compilation cache already holds.
    workdir = tmp_path / "ablation"
    args = [
        f"--config={TINY}",
        f"--workdir={workdir}",
        f"--config.data_dir={trained[0]}",
        "--variants=no_crops",
        "--seeds=1",
        "--config.num_epochs=1",  # 3 steps a training: what is tested is the command's work
    ]
    result = _run_cli(args, tmp_path, env=tiny_runs.ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {}
    for run in ("baseline", "no_crops"):
        with open(workdir / run / "seed0" / "result.json") as f:
            rows[run] = json.load(f)["probe"]
    table = (workdir / "table.txt").read_text()
    assert table.strip() in result.stdout
    lines = table.splitlines()
    assert "mean ± std over 1 seed(s); 2 trainings" in lines[0]
    for line, run in zip(lines[2:4], ("baseline", "no_crops")):
        numbers = [float(x) for x in line.split()[1:3]]
        np.testing.assert_allclose(
            numbers, [rows[run]["trained"][m] for m in ("video", "audio")], atol=0.051
        )
    assert lines[3].endswith("crops.enabled=False") and lines[4].startswith("random init")
    # Finished runs are not trained again: a second call only reads their results.
    again = _run_cli(args, tmp_path, env=tiny_runs.ENV)
    assert again.returncode == 0 and "step 1/" not in again.stdout
    assert (workdir / "table.txt").read_text().splitlines()[2:] == lines[2:]
