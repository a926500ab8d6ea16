"""The smart client against the sidecar against Redis directly: what the sidecar's extra hop costs.

Four redis-server shards and a sidecar over them. One application connection, redis-py, sends
GETs and SETs (one in ten) of 10,000 keys one after another, three ways in the same run:

- ``direct``: to one redis-server holding every key (no sharding: the floor),
- ``client``: ``cachefleet.client.ShardedRedis``, routing by the ring inside the process,
- ``sidecar``: to the sidecar on localhost, which routes by the same ring.

The three take turns in short rounds (this machine is shared and noisy; turns spread the noise
over all three). Reported: requests/s (the median of the rounds) and p50/p99 latency of each, and
the ratios to ``direct``.

Prints one JSON line, then a one-line summary.

    python bench/client.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from cachefleet.client import ShardedRedis  # noqa: E402

from bench.entry import run  # noqa: E402
from tests.support import (  # noqa: E402
    sidecar_config,
    start_redis_servers,
    start_sidecar,
    write_config,
)

KEYS = 10_000
WRITE_SHARE = 0.1

Call = Callable[[str, bytes, bytes | None], Any]


def workload(seed: int, count: int) -> list[tuple[str, bytes, bytes | None]]:
    rng = random.Random(seed)
    work: list[tuple[str, bytes, bytes | None]] = []
    for _ in range(count):
        key = b"bench:%d" % rng.randrange(KEYS)
        if rng.random() < WRITE_SHARE:
            work.append(("SET", key, b"x" * 32))
        else:
            work.append(("GET", key, None))
    return work


def one_round(call: Call, work: list[tuple[str, bytes, bytes | None]]) -> tuple[float, list[float]]:
    """Requests/s of the round and each request's latency in seconds."""
    latencies: list[float] = []
    clock = time.perf_counter
    started = clock()
    for command, key, value in work:
        sent = clock()
        call(command, key, value)
        latencies.append(clock() - sent)
    return len(work) / (clock() - started), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def caller(client: redis.Redis | ShardedRedis) -> Call:
    def call(command: str, key: bytes, value: bytes | None) -> Any:
        if value is None:
            return client.execute_command(command, key)
        return client.execute_command(command, key, value)

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    rounds, per_round = (3, 2_000) if args.quick else (7, 10_000)
    started = time.monotonic()

    with start_redis_servers(5) as servers, tempfile.TemporaryDirectory() as scratch:
        shards, alone = servers[:4], servers[4]
        config = sidecar_config([s.address for s in shards])
        path = Path(scratch) / "sidecar.json"
        write_config(path, config)
        with start_sidecar(config=config) as sidecar:
            clients: dict[str, redis.Redis | ShardedRedis] = {
                "direct": redis.Redis(port=alone.port, protocol=2),
                "client": ShardedRedis(path),
                "sidecar": redis.Redis(port=sidecar.port, protocol=2),
            }
            calls = {name: caller(client) for name, client in clients.items()}
            fill = [("SET", b"bench:%d" % i, b"x" * 32) for i in range(KEYS)]
            for call in calls.values():
                one_round(call, fill[: KEYS // 10])  # connections up, code warm
                one_round(call, fill)
            rps: dict[str, list[float]] = {name: [] for name in calls}
            latencies: dict[str, list[float]] = {name: [] for name in calls}
            for index in range(rounds):
                work = workload(index, per_round)
                order = list(calls)
                random.Random(index).shuffle(order)
                for name in order:
                    rate, times = one_round(calls[name], work)
                    rps[name].append(rate)
                    latencies[name].extend(times)
            for client in clients.values():
                client.close()

    measured = {
        name: {
            "rps": round(statistics.median(rps[name])),
            "p50_us": round(percentile(latencies[name], 0.50) * 1e6, 1),
            "p99_us": round(percentile(latencies[name], 0.99) * 1e6, 1),
        }
        for name in rps
    }
    direct = measured["direct"]
    ratios = {
        name: {
            "rps": round(measured[name]["rps"] / direct["rps"], 3),
            "p50": round(measured[name]["p50_us"] / direct["p50_us"], 3),
            "p99": round(measured[name]["p99_us"] / direct["p99_us"], 3),
        }
        for name in ("client", "sidecar")
    }
    report = {
        "benchmark": "client",
        "rounds": rounds,
        "requests_per_round": per_round,
        "write_share": WRITE_SHARE,
        "measured": measured,
        "vs_direct": ratios,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report))
    hop = measured["sidecar"]["p50_us"] - direct["p50_us"]
    routing = measured["client"]["p50_us"] - direct["p50_us"]
    print(
        "client vs sidecar vs direct (one connection, redis-py, GET/SET 9:1): "
        + "; ".join(
            f"{name} {m['rps']:,} req/s p50 {m['p50_us']:.0f} µs p99 {m['p99_us']:.0f} µs"
            for name, m in measured.items()
        )
        + f"; the sidecar's hop adds {hop:.0f} µs at p50 ({1 - ratios['sidecar']['rps']:.0%} of"
        f" direct's requests/s), the smart client's routing {routing:.0f} µs"
        f" ({1 - ratios['client']['rps']:.0%})"
    )
    return 0


if __name__ == "__main__":
    run(main)
