"""`benchmarks.demo_seeds`: it reads the table `stica_jax.main` prints, and its summary rows are
the gains' mean, min and max (checked against NumPy on made-up rows)."""

import json

import ml_collections
import numpy as np
import pytest

from stica_jax import train


@pytest.fixture(scope="module")
def bench():
    from benchmarks import demo_seeds

    return demo_seeds


def test_parses_the_table_the_trainer_prints(bench):
    config = ml_collections.ConfigDict(
        {"eval": {"method": "linear_probe", "dataset": "av_digits", "test_split": "test"}}
    )
    table = {
        "trained": {"video": 81.25, "audio": 9.0},
        "random init": {"video": 100.0, "audio": 48.04},
    }
    stdout = "step 558/558 (100%) loss 2.0\n" + train.format_probe_table(config, table) + "\n"
    assert bench.parse_table(stdout) == {"trained": (81.2, 9.0), "random init": (100.0, 48.0)}
    with pytest.raises(RuntimeError, match="no trained / random init table"):
        bench.parse_table("step 558/558\n")


def test_summary_rows_are_mean_min_max_of_the_gains(bench):
    rng = np.random.default_rng(3)
    rows = rng.uniform(10, 95, size=(4, 4)).round(1)  # trained v, a, random v, a
    results = [
        {"name": f"run {i}", "wall_seconds": 60.0 * i, "trained": r[:2], "random init": r[2:]}
        for i, r in enumerate(rows)
    ]
    lines = bench.format_table(results, "header").splitlines()
    gains = rows[:, :2] - rows[:, 2:]
    for line, stat in zip(lines[-3:], (np.mean, np.min, np.max), strict=True):
        got = [float(x) for x in line.split()[-2:]]
        np.testing.assert_allclose(got, stat(gains, axis=0), atol=0.051)
    for line, gain in zip(lines[2:-3], gains, strict=True):
        assert [float(x) for x in line.split()[-4:-2]] == pytest.approx(gain, abs=0.051)


def test_a_finished_run_is_read_back_not_trained_again(bench, tmp_path):
    done = {"name": "seed 0", "wall_seconds": 1.0, "trained": [1, 2], "random init": [0, 0]}
    (tmp_path / "demo_run.json").write_text(json.dumps(done))
    # A config that does not exist: training would fail; reading back must not start it.
    got = bench.run_one("seed 0", str(tmp_path), "/nonexistent.py", str(tmp_path), 0, 1, [])
    assert got == done
