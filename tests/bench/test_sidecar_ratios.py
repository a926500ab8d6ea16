"""bench/sidecar.py's ratios on hand-made runs: each is the median of per-round ratios, so a
round in which the whole machine was slow moves both sides of it alike."""

from __future__ import annotations

from bench.sidecar import TESTS, Run, Target, p99_of, per_round, ratios, round_order, summarise


def run(target: str, round_number: int, rps: float, p99: float = 1.0, pipeline: int = 1) -> Run:
    figures = {test: {"rps": rps, "p50_ms": p99 / 2, "p99_ms": p99} for test in TESTS}
    return Run(target, pipeline, round_number, 1000, 1.0, 0.01, 0.02, figures)


def both_pipelines(target: str, round_number: int, rps: float, p99: float = 1.0) -> list[Run]:
    return [run(target, round_number, rps, p99, p) for p in (1, 16)]


def test_the_ratio_is_the_median_of_the_rounds_not_of_the_medians() -> None:
    # Per round, sidecar ÷ twemproxy: 1.2, 0.8, 1.1 → the median is 1.1. The medians of the
    # two targets' rounds (90 and 100) would give 0.9 and miss the target.
    twemproxy = [50.0, 100.0, 100.0]
    sidecar = [60.0, 80.0, 110.0]
    runs = [r for n, v in enumerate(twemproxy) for r in both_pipelines("twemproxy", n, v)]
    runs += [r for n, v in enumerate(sidecar) for r in both_pipelines("sidecar", n, v)]
    comparison = ratios(summarise(runs), runs)
    assert comparison["P1"]["throughput_per_round"] == [1.2, 0.8, 1.1]
    assert comparison["P1"]["throughput"] == 1.1
    assert comparison["P1"]["throughput_met"]
    assert summarise(runs)["sidecar"]["P1"]["rps"] / summarise(runs)["twemproxy"]["P1"]["rps"] < 1


def test_p99_is_paired_too_and_a_round_missing_a_target_is_left_out() -> None:
    runs = [r for n in range(3) for r in both_pipelines("twemproxy", n, 100.0, p99=2.0)]
    runs += [r for n, p99 in enumerate([1.0, 3.0]) for r in both_pipelines("sidecar", n, 90.0, p99)]
    assert per_round(runs, "sidecar", "twemproxy", 16, p99_of) == [0.5, 1.5]
    comparison = ratios(summarise(runs), runs)
    assert comparison["P16"]["p99"] == 1.0
    assert comparison["P16"]["p99_met"]
    assert not comparison["P1"]["throughput_met"]  # 0.9 in both rounds


def test_features_on_against_off_is_paired_per_round() -> None:
    runs = [r for n in range(3) for r in both_pipelines("twemproxy", n, 100.0)]
    runs += [r for n, v in enumerate([100.0, 50.0, 96.0]) for r in both_pipelines("sidecar", n, v)]
    plain = [98.0, 52.0, 100.0]
    runs += [r for n, v in enumerate(plain) for r in both_pipelines("sidecar-plain", n, v)]
    comparison = ratios(summarise(runs), runs)
    assert comparison["features_on_vs_off_per_round"]["P1"] == [1.02, 0.962, 0.96]
    assert comparison["features_on_vs_off"]["P1"] == 0.962
    assert comparison["features_within_5_percent"]


def test_every_other_round_runs_the_targets_in_reverse() -> None:
    targets = [Target(name, port, None) for port, name in enumerate("abc")]
    assert [t.name for t in round_order(targets, 0)] == ["a", "b", "c"]
    assert [t.name for t in round_order(targets, 1)] == ["c", "b", "a"]
    assert [t.name for t in round_order(targets, 2)] == ["a", "b", "c"]
