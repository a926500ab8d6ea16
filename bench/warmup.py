"""The rehashing storm, measured: a capacity change 4 -> 5 shards under a read-through workload,
three ways, and the load each puts on the database behind the cache.

1. **modulo**: the application shards by ``hash % N`` itself (five redis-servers, the fifth empty
   until N becomes 5). Changing N moves about 80% of the keys.
2. **immediate**: the sidecar's consistent-hash ring, the operator cutting over at once
   (``warmUp.enabled: false``): the 20% of keys that move miss on their new owner.
3. **warm-up**: the sidecar and the operator's warm-up (shadow ramp, cut-over on the hit ratio
   the sidecars measure, then a grace period where misses fall back to the old owner).

The last two run the real operator code on this machine (``LocalFleet``: the operator's reconcile(),
real redis-server processes, the real sidecar). The workload (``bench/warmup_load.py``) is the same
for all three: Zipf-distributed keys, GET, on a miss load from the database (counted) and SET;
database updates delete cached keys. Reported per way: database loads per second over time, the
steady baseline (the 20 s before the change) and the peak after it (5 s moving average; the 1 s peak
too), the share of keys whose first read in the 5 s after the cut-over missed, beyond those that
miss anyway (the same share measured before the change: keys an update deleted), and how long the
warm-up took to reach the cut-over hit ratio. Targets: modulo about 80% of keys miss, immediate
about 20%, and with warm-up the peak database load is at most 1.1x the baseline. Writes a PNG chart
of the three curves next to the JSON line, then a one-line summary.

    python bench/warmup.py [--quick] [--png PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import mmh3  # noqa: E402
from cachefleet.ring import RingAssignment  # noqa: E402
from cachefleet_operator.local import LocalFleet  # noqa: E402
from cachefleet_operator.plan import EventSpec  # noqa: E402

from bench.entry import run  # noqa: E402
from bench.warmup_load import (  # noqa: E402
    ByModulo,
    Ledger,
    Router,
    ThroughSidecar,
    Workload,
    moving_average,
    rates,
)
from tests.support import free_port, start_redis_servers  # noqa: E402

BIN_SECONDS = 1.0
SMOOTH_BINS = 5
BASELINE_SECONDS = 20.0
PEAK_TARGET = 1.1
TIMEOUT = 2.0


@dataclass(frozen=True)
class Settings:
    keys: int = 20_000
    zipf_s: float = 1.0
    rate: float = 2000.0
    workers: int = 16
    ttl_seconds: float = 3600.0  # long: a miss means a moved or updated key, not an expiry
    write_share: float = 0.1  # database updates: each deletes a cached key
    steady_seconds: float = 45.0  # before the change (the first seconds settle the workload)
    after_seconds: float = 60.0  # after the change is asked for
    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    step_seconds: int = 5
    cutover_hit_ratio: float = 0.9
    grace_seconds: int = 60


QUICK = Settings(
    keys=5_000,
    rate=1000.0,
    steady_seconds=20.0,
    after_seconds=35.0,
    step_seconds=2,
    grace_seconds=20,
)
# A key counts as "missing after the cut-over" when its first read in this long after it missed.
FIRST_READ_SECONDS = 5.0


@dataclass
class Outcome:
    way: str
    ledger: Ledger
    start: float  # when the workload started
    change_at: float  # when the capacity change was asked for
    cutover_at: float | None  # when requests began to go to the new owners
    moved: Callable[[bytes], bool]
    moved_fraction: float
    warmup_seconds: float | None = None
    events: list[str] = field(default_factory=list)


def workload(router: Router, settings: Settings) -> Workload:
    return Workload(
        router,
        settings.keys,
        settings.zipf_s,
        settings.rate,
        settings.workers,
        settings.ttl_seconds,
        settings.write_share,
    )


async def _drive(load: Workload, settings: Settings, change: Callable[[], None]) -> float:
    """Fill the cache, run the workload, ask for the change after the steady period; return
    when the change was asked for."""
    await load.prefill()
    task = asyncio.create_task(load.run())
    await asyncio.sleep(settings.steady_seconds)
    change_at = time.monotonic()
    change()
    await asyncio.sleep(settings.after_seconds)
    load.stopping = True
    await task
    load.router.close()  # inside the loop its connections belong to
    return change_at


def by_modulo(settings: Settings) -> Outcome:
    with start_redis_servers(5) as servers:
        router = ByModulo([s.port for s in servers], settings.workers, TIMEOUT, shards=4)
        load = workload(router, settings)
        start = time.monotonic()

        def change() -> None:
            router.shards = 5

        change_at = asyncio.run(_drive(load, settings, change))

    def moved(key: bytes) -> bool:
        h = mmh3.hash(key, 0, False)
        return h % 4 != h % 5

    return Outcome("modulo", load.ledger, start, change_at, change_at, moved, 0.8)


def manifest(settings: Settings, warm: bool) -> dict[str, Any]:
    return {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "CacheCluster",
        "metadata": {"name": "bench"},
        "spec": {
            "shards": 4,
            "warmUp": {
                "enabled": warm,
                "steps": list(settings.steps),
                "stepSeconds": settings.step_seconds,
                "cutoverHitRatio": settings.cutover_hit_ratio,
                "graceSeconds": settings.grace_seconds,
                "timeoutSeconds": 3600,
            },
        },
    }


def through_sidecar(settings: Settings, warm: bool, directory: Path) -> Outcome:
    """The operator's code and the sidecar: 4 -> 5 with or without the warm-up."""
    marks: dict[str, float] = {}
    lines: list[str] = []

    def on_event(event: EventSpec) -> None:
        marks.setdefault(event.reason, time.monotonic())
        lines.append(f"{event.reason}: {event.message}")

    fleet = LocalFleet(
        manifest(settings, warm),
        directory,
        sidecar_port=free_port(),
        admin_port=free_port(),
        on_event=on_event,
    )
    fleet.start()
    stop = threading.Event()
    scale_to: list[int] = []
    rings: dict[str, Any] = {}

    def tick() -> None:
        if scale_to:
            fleet.scale(scale_to.pop())
        warm_up = fleet.status.get("warmUp")
        if warm_up and "from" not in rings:
            rings["from"] = RingAssignment.model_validate(warm_up["fromRing"]["assignment"])
            rings["to"] = RingAssignment.model_validate(warm_up["toRing"]["assignment"])
            rings["moved"] = warm_up["movedFraction"]

    try:
        fleet.run(lambda: fleet.phase == "Stable" and fleet.sidecar is not None, 60)
        loop = threading.Thread(
            target=lambda: fleet.run(stop.is_set, 3600, tick), name="operator", daemon=True
        )
        loop.start()
        router = ThroughSidecar(fleet.sidecar_port, settings.workers, TIMEOUT)
        load = workload(router, settings)
        start = time.monotonic()
        change_at = asyncio.run(_drive(load, settings, lambda: scale_to.append(5)))
        stop.set()
        loop.join(30)
    finally:
        stop.set()
        fleet.stop()
    before, after = rings["from"].to_ring(), rings["to"].to_ring()

    def moved(key: bytes) -> bool:
        return bool(before.shard_for(key) != after.shard_for(key))

    cutover = marks.get("CutOver")
    if cutover is not None:
        cutover += 1.0  # the sidecar reads its config file about once a second
    warmup_seconds = None
    if warm and cutover is not None and "ShadowingStarted" in marks:
        warmup_seconds = marks["CutOver"] - marks["ShadowingStarted"]
    way = "warm-up" if warm else "immediate"
    return Outcome(
        way, load.ledger, start, change_at, cutover, moved, float(rings["moved"]),
        warmup_seconds, lines,
    )  # fmt: skip


def first_reads_missing(ledger: Ledger, start: float) -> float | None:
    """Of the distinct keys read in FIRST_READ_SECONDS from ``start``, the share whose first read
    there missed. The cache starts full, so before a change this is the updates' share only."""
    first: dict[bytes, bool] = {}
    for t, key, hit in ledger.reads:
        if start <= t < start + FIRST_READ_SECONDS and key not in first:
            first[key] = hit
    return (len(first) - sum(first.values())) / len(first) if first else None


def summarise(outcome: Outcome) -> dict[str, Any]:
    ledger = outcome.ledger
    end = outcome.change_at + max(
        1.0, (max((t for t, _, _ in ledger.reads), default=0) - outcome.change_at)
    )
    base_start = outcome.change_at - BASELINE_SECONDS
    loads = rates(ledger.loads, base_start, end, BIN_SECONDS)
    smooth = moving_average(loads, SMOOTH_BINS)
    baseline_bins = int(BASELINE_SECONDS / BIN_SECONDS)
    baseline = statistics.mean(loads[:baseline_bins])
    after = smooth[baseline_bins + SMOOTH_BINS - 1 :] or smooth[baseline_bins:]
    peak = max(after)
    reads = [hit for t, _, hit in ledger.reads if t < outcome.change_at and t >= base_start]
    cutover = outcome.cutover_at
    after_cutover = None if cutover is None else first_reads_missing(ledger, cutover)
    before_change = first_reads_missing(ledger, outcome.change_at - 2 * FIRST_READ_SECONDS)
    return {
        "moved_fraction": round(outcome.moved_fraction, 4),
        "baseline_loads_per_second": round(baseline, 1),
        "peak_loads_per_second": round(peak, 1),
        "peak_over_baseline": round(peak / baseline, 3) if baseline else None,
        "raw_peak_loads_per_second": round(max(loads[baseline_bins:]), 1),
        "baseline_hit_ratio": round(sum(reads) / len(reads), 4) if reads else None,
        "keys_missing_after_cutover": _round(after_cutover),
        "keys_missing_before_change": _round(before_change),
        # The share of keys that miss because of the change: the misses beyond the updates'.
        "keys_missing_because_of_the_change": _round(
            None
            if after_cutover is None or before_change is None
            else (after_cutover - before_change) / (1 - before_change)
        ),
        "cutover_after_seconds": _round(
            None if outcome.cutover_at is None else outcome.cutover_at - outcome.change_at
        ),
        "warmup_seconds": _round(outcome.warmup_seconds),
        "reads": len(ledger.reads),
        "database_loads": len(ledger.loads),
        "stale_reads": len(ledger.stale),
        "failed_requests": len(ledger.failures),
        "loads_per_second": [round(v, 1) for v in loads],
        "loads_per_second_smoothed": [round(v, 1) for v in smooth],
        "curve_starts_seconds_before_change": BASELINE_SECONDS,
        "events": outcome.events,
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def chart(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4.5))
    colours = {"modulo": "tab:red", "immediate": "tab:orange", "warm-up": "tab:green"}
    for way, result in results.items():
        curve = result["loads_per_second_smoothed"]
        times = [i * BIN_SECONDS - BASELINE_SECONDS for i in range(len(curve))]
        axes.plot(times, curve, label=way, color=colours.get(way))
        if result["cutover_after_seconds"] is not None and way == "warm-up":
            axes.axvline(result["cutover_after_seconds"], color=colours[way], linestyle=":",
                         label="warm-up cut-over")  # fmt: skip
    axes.axvline(0, color="grey", linestyle="--", label="4 → 5 shards asked")
    axes.set_xlabel("seconds since the capacity change was asked for")
    axes.set_ylabel("database loads / s (5 s average)")
    axes.set_title("Database load during a 4 → 5 shard change")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter and smaller: a smoke run")
    parser.add_argument("--png", type=Path, default=ROOT / "bench" / "results" / "warmup.png")
    parser.add_argument("--ways", default="modulo,immediate,warm-up")
    args = parser.parse_args()
    settings = QUICK if args.quick else Settings()
    ways = args.ways.split(",")
    started = time.monotonic()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="cachefleet-warmup-bench-") as scratch:
        if "modulo" in ways:
            outcomes.append(by_modulo(settings))
        if "immediate" in ways:
            outcomes.append(through_sidecar(settings, False, Path(scratch) / "immediate"))
        if "warm-up" in ways:
            outcomes.append(through_sidecar(settings, True, Path(scratch) / "warm"))
    results = {o.way: summarise(o) for o in outcomes}
    chart(results, args.png)
    verdicts: dict[str, Any] = {}
    if "modulo" in results:
        missing = results["modulo"]["keys_missing_because_of_the_change"] or 0
        verdicts["modulo_about_80_percent_miss"] = 0.7 <= missing <= 0.9
    if "immediate" in results:
        missing = results["immediate"]["keys_missing_because_of_the_change"] or 0
        verdicts["immediate_about_20_percent_miss"] = 0.15 <= missing <= 0.25
    if "warm-up" in results:
        ratio = results["warm-up"]["peak_over_baseline"]
        verdicts["warmup_peak_at_most_1.1x"] = ratio is not None and ratio <= PEAK_TARGET
        verdicts["warmup_no_stale_reads"] = results["warm-up"]["stale_reads"] == 0
    report = {
        "benchmark": "warmup",
        "settings": settings.__dict__ | {"steps": list(settings.steps)},
        "results": results,
        "targets": verdicts,
        "chart": str(args.png),
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report))
    parts = []
    for way, result in results.items():
        parts.append(
            f"{way}: {(result['keys_missing_because_of_the_change'] or 0) * 100:.0f}% of keys "
            f"miss at cut-over, peak {result['peak_over_baseline']}x baseline "
            f"({result['baseline_loads_per_second']:g} loads/s)"
            + (f", warm in {result['warmup_seconds']:.0f} s" if result["warmup_seconds"] else "")
        )
    verdict = "all targets met" if all(verdicts.values()) else "targets NOT all met"
    print("warmup bench: " + "; ".join(parts) + f"; {verdict}; chart {args.png}")
    return 0


if __name__ == "__main__":
    run(main)
