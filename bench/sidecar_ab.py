"""A/B of the sidecar's request path: this tree's sidecar against another tree's, and twemproxy.

The figures of one change to the request path: both sidecars (the same config) and twemproxy run
over the same four redis-server shards and take turns, round after round, so the machine's drift
(it is shared) falls on all three alike. Each turn is one redis-benchmark run (50 clients, 64-byte
values, random keys over 100k, SET then GET) at one pipeline depth; around it the proxy's user and
kernel CPU time are read from /proc. The medians over rounds are reported: requests/s and p99 per
test, and CPU per request. The CPU per request is the steadier figure on a noisy machine.

The other tree is a checkout of another commit (``git worktree add /tmp/base COMMIT``); its
sidecar runs with ``PYTHONPATH`` on its ``sidecar-image``. Its C extension is built in place when
it has none, with this Python's compiler and flags (as ``pip install`` builds it). Each sidecar's
/metrics give the share of requests its C fast path took, so a baseline that fell back to pure
Python shows. ``--features`` turns on health checks, a gutter member, hot-key detection and L1
for both sidecars, as in ``bench/sidecar.py``.

    python bench/sidecar_ab.py --baseline DIR [--rounds 10] [--requests 60000] [--pipeline 1]
        [--features]

Prints one JSON line, then a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cachefleet.config import SidecarConfig  # noqa: E402

from bench.entry import run  # noqa: E402
from bench.sidecar import TESTS, every_feature_on, path_shares, redis_benchmark  # noqa: E402
from tests.support import (  # noqa: E402
    Sidecar,
    cpu_times,
    sidecar_config,
    start_nutcracker,
    start_redis_servers,
    start_sidecar,
)

PACKAGE = Path("sidecar-image/cachefleet/sidecar")


def build_extension(tree: Path) -> Path:
    """The tree's ``_speedups`` module, compiled in place unless it is there already."""
    package = tree / PACKAGE
    if not package.is_dir():
        raise SystemExit(f"{tree} has no {PACKAGE}: give the root of a cachefleet checkout")
    built = package / f"_speedups{sysconfig.get_config_var('EXT_SUFFIX')}"
    if built.exists():
        return built
    sources = sorted(str(p) for p in package.glob("_*.c"))
    argv = [
        *shlex.split(sysconfig.get_config_var("LDSHARED")),
        *shlex.split(sysconfig.get_config_var("CFLAGS")),
        *shlex.split(sysconfig.get_config_var("CCSHARED")),
        f"-I{sysconfig.get_paths()['include']}",
        *sources,
        "-o",
        str(built),
    ]
    subprocess.run(argv, check=True)
    return built


def config_for(addresses: list[str], gutter: str | None) -> SidecarConfig:
    config = sidecar_config(addresses)
    return config if gutter is None else every_feature_on(config, gutter)


@contextlib.contextmanager
def proxies(baseline: Path, features: bool) -> Iterator[list[tuple[str, int, int, Sidecar | None]]]:
    """(name, port, pid, sidecar) of this tree's sidecar, the baseline's and twemproxy."""
    with start_redis_servers(5) as servers:
        addresses = [s.address for s in servers[:4]]
        gutter = servers[4].address if features else None
        theirs = {**os.environ, "PYTHONPATH": str(baseline / "sidecar-image")}
        with (
            start_sidecar(config=config_for(addresses, gutter)) as ours,
            start_sidecar(config=config_for(addresses, gutter), env=theirs) as base,
            start_nutcracker(addresses) as twemproxy,
        ):
            yield [
                ("this tree", ours.port, ours.pid, ours),
                ("baseline", base.port, base.pid, base),
                ("twemproxy", twemproxy.port, twemproxy.pid, None),
            ]


def turn(port: int, pid: int, pipeline: int, requests: int) -> dict[str, Any]:
    user, system = cpu_times(pid)
    figures, _ = redis_benchmark(port, pipeline, requests)
    user_after, system_after = cpu_times(pid)
    done = requests * len(TESTS)
    return {
        "tests": figures,
        "cpu_user_us": (user_after - user) / done * 1e6,
        "cpu_system_us": (system_after - system) / done * 1e6,
    }


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    out: dict[str, Any] = {
        test: {
            "rps": median([t["tests"][test]["rps"] for t in turns]),
            "p99_ms": median([t["tests"][test]["p99_ms"] for t in turns]),
        }
        for test in TESTS
    }
    out["cpu_user_us_per_request"] = median([t["cpu_user_us"] for t in turns])
    out["cpu_system_us_per_request"] = median([t["cpu_system_us"] for t in turns])
    out["cpu_user_us_per_round"] = [round(t["cpu_user_us"], 2) for t in turns]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="another checkout's root")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=60_000, help="per test and turn")
    parser.add_argument("--pipeline", type=int, default=1)
    parser.add_argument("--features", action="store_true", help="gutter, health, hot keys, L1")
    args = parser.parse_args()
    if args.rounds < 1 or args.requests < 1 or args.pipeline < 1:
        parser.error("--rounds, --requests and --pipeline must be positive")
    baseline = args.baseline.resolve()
    build_extension(baseline)
    started = time.monotonic()
    turns: dict[str, list[dict[str, Any]]] = {}
    with proxies(baseline, args.features) as targets:
        for round_number in range(args.rounds):
            order = targets if round_number % 2 == 0 else targets[::-1]
            for name, port, pid, _ in order:
                turns.setdefault(name, []).append(turn(port, pid, args.pipeline, args.requests))
        paths = {name: path_shares(sc)["share"] for name, _, _, sc in targets if sc is not None}
    results = {name: summarise(t) for name, t in turns.items()}
    report = {
        "benchmark": "sidecar_ab",
        "baseline": str(baseline),
        "pipeline": args.pipeline,
        "features": args.features,
        "rounds": args.rounds,
        "requests_per_test": args.requests,
        "results": results,
        "sidecar_paths": paths,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report))

    def cpu(name: str) -> str:
        r = results[name]
        return (
            f"{r['cpu_user_us_per_request']:.2f} user + {r['cpu_system_us_per_request']:.2f} kernel"
        )

    print(
        f"sidecar A/B at P{args.pipeline}{' with every feature on' if args.features else ''}, "
        f"{args.rounds} rounds: CPU µs per request, this tree {cpu('this tree')}, baseline "
        f"{cpu('baseline')}, twemproxy {cpu('twemproxy')}; req/s GET "
        + ", ".join(f"{name} {r['GET']['rps']:,.0f}" for name, r in results.items())
        + "; C path share "
        + ", ".join(f"{name} {share.get('c', 0.0):.0%}" for name, share in paths.items())
    )
    return 0


if __name__ == "__main__":
    run(main)
