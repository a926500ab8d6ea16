"""Sidecar benchmark: redis-benchmark against one Redis directly, twemproxy and the sidecar.

All three run at once on 127.0.0.1: four redis-server shards behind nutcracker (murmur, ketama)
and behind the sidecar, plus one standalone redis-server as the reference. The sidecar runs
from a config file with every feature on: health checks at their defaults, a gutter pool (a
sixth redis-server), hot-key detection and L1 (the keys are uniform: none is hot, so this is
their cost on every request). ``sidecar-plain`` is the same sidecar with the gutter, hot-key
detection and L1 off (target: the full one within 5% of it). At the end the sidecar's /metrics tell
which share of the requests its C fast path took and which the Python paths. A second sidecar,
``sidecar-shadow``, runs the same config in the shadow phase of a 4 -> 5 change at 100%: the keys
that move (20%) are also read, mirrored or invalidated on a seventh redis-server, the new shard.
That is extra work by design; its throughput and p99 are reported against the plain sidecar's.
redis-benchmark (50 clients, 64-byte values, random keys over 100k, SET and GET) runs at pipeline
1 and 16 against each target, interleaved round-robin over several rounds (the order reversed
every other round) because the machine is shared and noisy; the medians over rounds are
reported. Every ratio is paired: the two targets' figures from the same round, a few seconds
apart, divided, then the median of those per-round ratios, so that the machine's swings from one
round to the next fall on both sides of each ratio. For the two proxies it also reads the
proxy's CPU time (utime + stime from /proc) around each run, to give CPU time per request.

Targets (issue 4): sidecar throughput ≥ 1.0 × twemproxy at pipeline 1 and ≥ 0.9 × at pipeline 16;
sidecar p99 ≤ 1.2 × twemproxy's. Prints one JSON line, then a one-line summary.

    python bench/sidecar.py [--rounds N] [--seconds S | --requests N] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cachefleet.config import (  # noqa: E402
    GutterConfig,
    HealthConfig,
    HotKeysConfig,
    L1Config,
    ShardEndpoint,
    SidecarConfig,
    WarmupConfig,
)
from cachefleet.ring import RingAssignment, Shard, classic_ring  # noqa: E402

from bench.entry import run  # noqa: E402
from bench.prometheus import prometheus_counters  # noqa: E402
from tests.support import (  # noqa: E402
    Sidecar,
    cpu_times,
    sidecar_config,
    start_nutcracker,
    start_redis_servers,
    start_sidecar,
)

CLIENTS = 50
VALUE_BYTES = 64
KEYSPACE = 100_000
TESTS = ("SET", "GET")
PIPELINES = (1, 16)
TARGETS = ("direct", "twemproxy", "sidecar", "sidecar-plain", "sidecar-shadow")
PROXIES = ("twemproxy", "sidecar", "sidecar-plain", "sidecar-shadow")
FEATURES_TARGET = 0.95  # the sidecar with every feature on, against the same with them off
THROUGHPUT_TARGETS = {1: 1.0, 16: 0.9}
P99_TARGET = 1.2
# Lower bounds on requests per test, so a slow calibration never makes a run trivially short.
MIN_REQUESTS = {1: 20_000, 16: 100_000}


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    pid: int | None  # the proxy process whose CPU time we measure; None for Redis itself


@dataclass
class Run:
    target: str
    pipeline: int
    round: int
    requests: int
    seconds: float
    cpu_user: float | None  # the proxy's CPU seconds in user space during the run
    cpu_system: float | None  # ... and in the kernel (its system calls: loopback TCP)
    by_test: dict[str, dict[str, float]]


def redis_benchmark(port: int, pipeline: int, requests: int) -> tuple[dict[str, Any], float]:
    """One redis-benchmark invocation (SET then GET); its CSV rows by test, and wall time."""
    argv = [
        "redis-benchmark",
        "-h", "127.0.0.1",
        "-p", str(port),
        "-c", str(CLIENTS),
        "-d", str(VALUE_BYTES),
        "-r", str(KEYSPACE),
        "-n", str(requests),
        "-P", str(pipeline),
        "-t", ",".join(t.lower() for t in TESTS),
        "--csv",
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark on :{port} failed: {done.stderr.strip()[-500:]}")
    rows = {row["test"]: row for row in csv.DictReader(io.StringIO(done.stdout))}
    missing = [t for t in TESTS if t not in rows]
    if missing:
        raise RuntimeError(f"redis-benchmark on :{port} printed no {missing}: {done.stdout!r}")
    figures = {
        test: {
            "rps": float(rows[test]["rps"]),
            "p50_ms": float(rows[test]["p50_latency_ms"]),
            "p99_ms": float(rows[test]["p99_latency_ms"]),
        }
        for test in TESTS
    }
    return figures, elapsed


def measure(target: Target, pipeline: int, requests: int, round_number: int) -> Run:
    if target.pid is None:
        figures, elapsed = redis_benchmark(target.port, pipeline, requests)
        return Run(target.name, pipeline, round_number, requests, elapsed, None, None, figures)
    user_before, system_before = cpu_times(target.pid)
    figures, elapsed = redis_benchmark(target.port, pipeline, requests)
    user_after, system_after = cpu_times(target.pid)
    return Run(
        target.name,
        pipeline,
        round_number,
        requests,
        elapsed,
        user_after - user_before,
        system_after - system_before,
        figures,
    )


def requests_for(target: Target, pipeline: int, seconds: float) -> int:
    """Calibrate: a short run tells how many requests per test last ``seconds``."""
    figures, _ = redis_benchmark(target.port, pipeline, MIN_REQUESTS[pipeline])
    slowest = min(figures[test]["rps"] for test in TESTS)
    return max(MIN_REQUESTS[pipeline], int(slowest * seconds))


def summarise(runs: list[Run]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for target in TARGETS:
        for pipeline in PIPELINES:
            mine = [r for r in runs if r.target == target and r.pipeline == pipeline]
            if not mine:
                continue
            case: dict[str, Any] = {"requests_per_test": mine[0].requests, "rounds": len(mine)}
            for test in TESTS:
                case[test] = {
                    figure: statistics.median(r.by_test[test][figure] for r in mine)
                    for figure in ("rps", "p50_ms", "p99_ms")
                }
            # Both tests together: total requests over total time, from the medians above
            # (a harmonic mean), so the combined figure always sits between SET's and GET's.
            case["rps"] = len(TESTS) / sum(1 / case[test]["rps"] for test in TESTS)
            case["rps_per_round"] = {test: [r.by_test[test]["rps"] for r in mine] for test in TESTS}
            case["p99_ms"] = max(case[test]["p99_ms"] for test in TESTS)
            case["p50_ms"] = max(case[test]["p50_ms"] for test in TESTS)
            if target in PROXIES:
                case.update(cpu_per_request(mine))
            results.setdefault(target, {})[f"P{pipeline}"] = case
    return results


def cpu_per_request(runs: list[Run]) -> dict[str, float | None]:
    """The proxy's CPU per request, whole and split into user space and kernel (medians over
    rounds): the kernel part is mostly loopback TCP, the user part the proxy's own code."""
    requests = [r.requests * len(TESTS) for r in runs]
    user = [r.cpu_user / n for r, n in zip(runs, requests, strict=True) if r.cpu_user is not None]
    system = [
        r.cpu_system / n for r, n in zip(runs, requests, strict=True) if r.cpu_system is not None
    ]
    total = [u + s for u, s in zip(user, system, strict=True)]

    def median_us(values: list[float]) -> float | None:
        return statistics.median(values) * 1e6 if values else None

    return {
        "cpu_us_per_request": median_us(total),
        "cpu_user_us_per_request": median_us(user),
        "cpu_system_us_per_request": median_us(system),
    }


def throughput_of(run: Run) -> float:
    """SET and GET of one run together: total requests over total time (a harmonic mean)."""
    return len(TESTS) / sum(1 / run.by_test[test]["rps"] for test in TESTS)


def p99_of(run: Run) -> float:
    return max(run.by_test[test]["p99_ms"] for test in TESTS)


def per_round(
    runs: list[Run], mine: str, theirs: str, pipeline: int, figure: Callable[[Run], float]
) -> list[float]:
    """figure(mine) / figure(theirs) in each round that measured both at ``pipeline``."""
    by_round = {(r.target, r.round): r for r in runs if r.pipeline == pipeline}
    rounds = sorted({r.round for r in runs})
    return [
        figure(by_round[(mine, n)]) / figure(by_round[(theirs, n)])
        for n in rounds
        if (mine, n) in by_round and (theirs, n) in by_round
    ]


def paired(
    runs: list[Run], mine: str, theirs: str, pipeline: int, figure: Callable[[Run], float]
) -> dict[str, Any]:
    """The median of the per-round ratios, and the ratios themselves (so the spread shows)."""
    each = per_round(runs, mine, theirs, pipeline, figure)
    return {"median": statistics.median(each), "per_round": [round(v, 3) for v in each]}


def ratios(results: dict[str, Any], runs: list[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sidecar, twemproxy = results["sidecar"], results["twemproxy"]
    for pipeline in PIPELINES:
        case = f"P{pipeline}"
        throughput = paired(runs, "sidecar", "twemproxy", pipeline, throughput_of)
        p99 = paired(runs, "sidecar", "twemproxy", pipeline, p99_of)
        out[case] = {
            "throughput": round(throughput["median"], 3),
            "throughput_per_round": throughput["per_round"],
            "throughput_target": THROUGHPUT_TARGETS[pipeline],
            "throughput_met": throughput["median"] >= THROUGHPUT_TARGETS[pipeline],
            "p99": round(p99["median"], 3),
            "p99_per_round": p99["per_round"],
            "p99_target": P99_TARGET,
            "p99_met": p99["median"] <= P99_TARGET,
        }
        cpu_s = sidecar[case].get("cpu_us_per_request")
        cpu_t = twemproxy[case].get("cpu_us_per_request")
        if cpu_s and cpu_t:
            out[case]["cpu_per_request"] = round(cpu_s / cpu_t, 3)
    out["all_met"] = all(
        out[f"P{p}"]["throughput_met"] and out[f"P{p}"]["p99_met"] for p in PIPELINES
    )
    if "sidecar-plain" in results:
        features = {
            p: paired(runs, "sidecar", "sidecar-plain", p, throughput_of) for p in PIPELINES
        }
        out["features_on_vs_off"] = {f"P{p}": round(v["median"], 3) for p, v in features.items()}
        out["features_on_vs_off_per_round"] = {f"P{p}": v["per_round"] for p, v in features.items()}
        out["features_within_5_percent"] = all(
            v["median"] >= FEATURES_TARGET for v in features.values()
        )
    if "sidecar-shadow" in results:
        out["shadow_100_percent_vs_plain_sidecar"] = {
            f"P{p}": {
                "throughput": round(
                    paired(runs, "sidecar-shadow", "sidecar", p, throughput_of)["median"], 3
                ),
                "p99": round(paired(runs, "sidecar-shadow", "sidecar", p, p99_of)["median"], 3),
            }
            for p in PIPELINES
        }
    return out


def round_order(targets: list[Target], round_number: int) -> list[Target]:
    """Every other round runs the targets in reverse, so no target always runs first or last
    and a slow drift of the machine's speed falls on both sides of each ratio alike."""
    return targets if round_number % 2 == 0 else targets[::-1]


def every_feature_on(config: SidecarConfig, gutter: str) -> SidecarConfig:
    """The config with health checks, a gutter member at ``gutter``, hot keys and L1 on."""
    return config.model_copy(
        update={
            "gutter": GutterConfig(
                enabled=True, shards=[ShardEndpoint(name="gutter-0", address=gutter)]
            ),
            "health": HealthConfig(),
            "hot_keys": HotKeysConfig(enabled=True),
            "l1": L1Config(enabled=True),
        }
    )


@contextlib.contextmanager
def fleet() -> Iterator[tuple[list[Target], Sidecar]]:
    """Four shards behind twemproxy and the sidecar (with a gutter member and health checks),
    one direct Redis, and a sidecar shadowing to a fifth shard; all stopped after."""
    with start_redis_servers(7) as servers:
        shards, direct, gutter, new = servers[:4], servers[4], servers[5], servers[6]
        addresses = [s.address for s in shards]
        plain = sidecar_config(addresses)
        config = every_feature_on(sidecar_config(addresses), gutter.address)
        other = sidecar_config(addresses)
        shadowing = plain.model_copy(
            update={
                "listen": other.listen,
                "admin_listen": other.admin_listen,
                "shards": [*config.shards, ShardEndpoint(name=new.address, address=new.address)],
                "warmup": WarmupConfig(
                    phase="shadow",
                    shadow_percent=100.0,
                    next_ring=RingAssignment.from_ring(
                        classic_ring([Shard(a) for a in [*addresses, new.address]])
                    ),
                    change_id="bench",
                ),
            }
        )
        with (
            start_nutcracker(addresses) as twemproxy,
            start_sidecar(config=config) as sidecar,
            start_sidecar(config=plain) as sidecar_plain,
            start_sidecar(config=shadowing) as shadow,
        ):
            targets = [
                Target("direct", direct.port, None),
                Target("twemproxy", twemproxy.port, twemproxy.pid),
                Target("sidecar", sidecar.port, sidecar.pid),
                Target("sidecar-plain", sidecar_plain.port, sidecar_plain.pid),
                Target("sidecar-shadow", shadow.port, shadow.pid),
            ]
            yield targets, sidecar


def path_shares(sidecar: Sidecar) -> dict[str, Any]:
    """Requests by path (c, python) and by route unit, from the sidecar's own metrics."""
    metrics = sidecar.metrics()
    paths = prometheus_counters(metrics, "cachefleet_sidecar_path_requests")
    routes = prometheus_counters(metrics, "cachefleet_sidecar_route_requests")
    total = sum(paths.values()) or 1.0
    return {
        "requests": {k: int(v) for k, v in paths.items()},
        "share": {k: round(v / total, 6) for k, v in paths.items()},
        "route_units": {k: int(v) for k, v in routes.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per test run")
    parser.add_argument("--requests", type=int, help="fixed requests per test (no calibration)")
    parser.add_argument("--quick", action="store_true", help="1 round of about 1 s: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 1.0
    if args.rounds < 1 or args.seconds <= 0 or (args.requests is not None and args.requests < 1):
        parser.error("--rounds, --seconds and --requests must be positive")
    started = time.monotonic()
    runs: list[Run] = []
    with fleet() as (targets, sidecar):
        counts = {
            (t.name, p): args.requests or requests_for(t, p, args.seconds)
            for t in targets
            for p in PIPELINES
        }
        for round_number in range(args.rounds):
            for pipeline in PIPELINES:
                for target in round_order(targets, round_number):
                    count = counts[(target.name, pipeline)]
                    runs.append(measure(target, pipeline, count, round_number))
        paths = path_shares(sidecar)
    results = summarise(runs)
    comparison = ratios(results, runs)
    report = {
        "benchmark": "sidecar",
        "clients": CLIENTS,
        "value_bytes": VALUE_BYTES,
        "keyspace": KEYSPACE,
        "rounds": args.rounds,
        "seconds_per_run": args.seconds if args.requests is None else None,
        "results": results,
        "sidecar_vs_twemproxy": comparison,
        "sidecar_features": {"health_checks": True, "gutter": True, "hot_keys": True, "l1": True},
        "sidecar_paths": paths,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report))
    parts = []
    for pipeline in PIPELINES:
        case = f"P{pipeline}"
        c = comparison[case]
        parts.append(
            f"P{pipeline}: sidecar {results['sidecar'][case]['rps']:,.0f} req/s vs twemproxy "
            f"{results['twemproxy'][case]['rps']:,.0f} (paired {c['throughput']:.2f}x, target "
            f"{c['throughput_target']}x {'met' if c['throughput_met'] else 'MISSED'}), "
            f"p99 {c['p99']:.2f}x ({'met' if c['p99_met'] else 'MISSED'})"
        )
    verdict = "met" if comparison["all_met"] else "NOT met"
    shares = ", ".join(f"{k} {v:.1%}" for k, v in sorted(paths["share"].items()))
    shadow = comparison.get("shadow_100_percent_vs_plain_sidecar", {})
    shadow_text = ", ".join(
        f"{case} {v['throughput']:.2f}x throughput, {v['p99']:.2f}x p99"
        for case, v in shadow.items()
    )
    cpu_text = ", ".join(
        f"{name} {case['cpu_us_per_request']:.1f} µs (user {case['cpu_user_us_per_request']:.1f},"
        f" kernel {case['cpu_system_us_per_request']:.1f})"
        for name in ("sidecar", "twemproxy")
        if (case := results[name]["P1"]).get("cpu_us_per_request") is not None
    )
    features = comparison.get("features_on_vs_off", {})
    features_text = ", ".join(f"{case} {value:.2f}x" for case, value in features.items())
    print(
        "sidecar bench: "
        + "; ".join(parts)
        + f"; all targets {verdict}; paths: {shares}"
        + (f"; CPU per request at P1: {cpu_text}" if cpu_text else "")
        + (f"; every feature on against off: {features_text}" if features_text else "")
        + (f"; 100% shadow against no warm-up: {shadow_text}" if shadow_text else "")
    )
    return 0


if __name__ == "__main__":
    run(main)
