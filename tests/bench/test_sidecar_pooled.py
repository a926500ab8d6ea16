"""bench/sidecar_pooled.py: the pooled median of many runs' rounds, and an interval that
resamples whole runs, so a target is met only when the whole interval is on its side."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.sidecar_pooled import cluster_interval, pool, pooled, read_run

RECORDED = Path(__file__).resolve().parents[2] / "bench" / "recorded" / "sidecar"


def test_the_pooled_median_is_over_every_round_of_every_run() -> None:
    runs = [[0.90, 1.00, 1.10], [0.96, 0.97], [1.20]]
    figure = pooled(runs, 0.95, at_least=True)
    assert figure["rounds"] == 6 and figure["runs"] == 3
    assert figure["median"] == 0.985  # of 0.90 0.96 0.97 1.00 1.10 1.20
    assert figure["run_medians"] == [1.0, 0.965, 1.2]
    assert figure["runs_met"] == 3


def test_a_median_above_the_target_is_not_enough_when_the_interval_reaches_below() -> None:
    # Two runs well above, two well below: the pooled median is above 0.95 but resampling
    # whole runs often draws the low ones, so the interval spans the bound.
    runs = [[1.10, 1.12], [1.08, 1.11], [0.85, 0.86], [0.84, 0.88]]
    figure = pooled(runs, 0.95, at_least=True)
    assert figure["median"] > 0.95
    assert figure["interval_95"][0] < 0.95 < figure["interval_95"][1]
    assert not figure["met"]


def test_a_tight_set_of_runs_meets_and_an_upper_bound_target_reads_the_high_end() -> None:
    runs = [[0.98, 0.99, 1.00], [0.99, 0.99], [0.97, 1.01]]
    assert pooled(runs, 0.95, at_least=True)["met"]
    assert not pooled(runs, 0.98, at_least=False)["met"]  # p99-style: the high end is above
    assert pooled(runs, 1.05, at_least=False)["met"]


def test_the_interval_resamples_runs_not_rounds_and_is_repeatable() -> None:
    # One run of many rounds far below, nine runs above: resampling rounds would bury the
    # low run's rounds; resampling runs keeps it a tenth of the draws, so the low end moves.
    runs = [[0.5] * 30] + [[1.0, 1.01]] * 9
    low, high = cluster_interval(runs, resamples=2000)
    assert low < 0.9 and high == pytest.approx(1.0, abs=0.01)
    assert cluster_interval(runs, resamples=2000) == (low, high)


def test_the_recorded_runs_read_and_pool() -> None:
    files = sorted(RECORDED.glob("*.txt"))
    assert len(files) >= 2
    figures = pool([read_run(f) for f in files])
    for case in ("P1", "P16"):
        for name in ("throughput", "p99", "features_on_vs_off"):
            assert figures[case][name]["runs"] == len(files)


def test_a_file_without_the_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("sidecar bench: nothing\n")
    message = re.escape("empty.txt holds no bench/sidecar.py JSON line")
    with pytest.raises(ValueError, match=message):
        read_run(path)
