"""bench/sidecar.py's paired ratios pooled over several of its runs, with a 95% interval.

One run's ratio is the median of a few rounds, and on this shared 2-core machine those rounds
spread by ±10–20%: a difference of 2% (what every feature costs at pipeline 16) is within
that noise, so single runs land on either side of a 5% bound. Pooling the rounds of many runs
narrows it. The interval resamples whole runs (a cluster bootstrap), not single rounds, because
the rounds of one run share its machine state; a target counts as met only when the whole
interval is on its side.

    python bench/sidecar_pooled.py RUN_OUTPUT [RUN_OUTPUT ...]

Each RUN_OUTPUT is what one ``bench/sidecar.py`` printed (its JSON line is read). Recorded runs
are in bench/recorded/sidecar/. Prints one JSON line, then a one-line summary.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.sidecar import FEATURES_TARGET, P99_TARGET, THROUGHPUT_TARGETS  # noqa: E402

RESAMPLES = 10_000
SEED = 1  # the interval of the same files is the same number every time


def read_run(path: Path) -> dict[str, Any]:
    """The JSON line a bench/sidecar.py run printed."""
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            report: dict[str, Any] = json.loads(line)
            if report.get("benchmark") == "sidecar":
                return report
    raise ValueError(f"{path} holds no bench/sidecar.py JSON line")


def cluster_interval(
    runs: Sequence[Sequence[float]], resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """The 95% interval of the pooled median: whole runs drawn with replacement."""
    rng = random.Random(seed)
    medians = sorted(
        statistics.median([v for run in rng.choices(runs, k=len(runs)) for v in run])
        for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def pooled(runs: Sequence[Sequence[float]], target: float, at_least: bool) -> dict[str, Any]:
    """The pooled median of the per-round ratios, its interval, and whether the whole interval
    meets ``target`` (≥ when ``at_least``, else ≤); also how many single runs met it."""
    runs = [run for run in runs if run]
    rounds = [v for run in runs for v in run]
    low, high = cluster_interval(runs)
    run_medians = [statistics.median(run) for run in runs]
    return {
        "runs": len(runs),
        "rounds": len(rounds),
        "median": round(statistics.median(rounds), 3),
        "interval_95": [round(low, 3), round(high, 3)],
        "target": target,
        "met": low >= target if at_least else high <= target,
        "runs_met": sum((m >= target) if at_least else (m <= target) for m in run_medians),
        "run_medians": [round(m, 3) for m in run_medians],
    }


def pool(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    comparisons = [r["sidecar_vs_twemproxy"] for r in reports]
    out: dict[str, Any] = {}
    for pipeline, target in THROUGHPUT_TARGETS.items():
        case = f"P{pipeline}"
        out[case] = {
            "throughput": pooled(
                [c[case]["throughput_per_round"] for c in comparisons], target, True
            ),
            "p99": pooled([c[case]["p99_per_round"] for c in comparisons], P99_TARGET, False),
            "features_on_vs_off": pooled(
                [c.get("features_on_vs_off_per_round", {}).get(case, []) for c in comparisons],
                FEATURES_TARGET,
                True,
            ),
        }
    return out


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]]
    if not paths:
        print("usage: " + __doc__.split("\n\n")[-2].strip(), file=sys.stderr)
        return 2
    try:
        reports = [read_run(p) for p in paths]
    except (OSError, ValueError) as error:
        print(f"sidecar_pooled: {error}", file=sys.stderr)
        return 2
    figures = pool(reports)
    print(json.dumps({"benchmark": "sidecar_pooled", "files": [str(p) for p in paths], **figures}))
    parts = []
    for case, f in figures.items():
        for name, label in (("throughput", "throughput"), ("p99", "p99"),
                            ("features_on_vs_off", "every feature on ÷ off")):  # fmt: skip
            v = f[name]
            parts.append(
                f"{case} {label} {v['median']:.3f}x [{v['interval_95'][0]:.3f}, "
                f"{v['interval_95'][1]:.3f}] ({'met' if v['met'] else 'NOT met'}; "
                f"{v['runs_met']} of {v['runs']} runs)"
            )
    print(f"sidecar pooled over {len(reports)} runs: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
