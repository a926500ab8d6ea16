"""Failover benchmark: a shard killed (kill -9) or hung (SIGSTOP) under a steady load, through
the sidecar (4 shards, 1 gutter member, health checks) and through twemproxy (4 shards,
``auto_eject_hosts``), each scenario on fresh processes.

The load is open loop at a fixed rate: ``--workers`` asyncio tasks, each with its own
connection and its own keys (spread over all shards by the proxy's hash), each doing one step
per tick. Half the workers read first (GET the key, judged against the last acknowledged
write; SET a new unique value; GET it back), half write first (SET, then GET), so both reads
and writes are in flight when a shard fails. A worker that falls behind (a request stuck on a
hung shard) skips the ticks it missed rather than bursting. Every worker visits each of its
keys once per ``--cycle`` seconds.

Per scenario: the error window (fault to the last failed request before the shard answers
again), failed requests by kind, throughput before, during and after the outage, stale reads
(a value other than the last acknowledged one, a miss is not stale), each other shard's load
(INFO ``total_commands_processed`` deltas, less the benchmark's own INFO) during the outage
against before, and when the shard was back in service.

Targets (issue 7), sidecar only: kill -9 window ≤ 0.25 s; SIGSTOP window ≤ request timeout +
0.5 s; 0 stale reads; the other shards' load unchanged beyond noise. twemproxy is measured the
same way for comparison. Prints one JSON line, then a one-line summary.

    python bench/failover.py [--quick] [--rate N] [--scenarios kill,stop]
                             [--proxies sidecar,twemproxy]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cachefleet.config import (  # noqa: E402
    GutterConfig,
    HealthConfig,
    PoolConfig,
    ShardEndpoint,
    SidecarConfig,
)
from cachefleet.sidecar import speedups  # noqa: E402

from bench.entry import run  # noqa: E402
from bench.failover_accounting import (  # noqa: E402
    CounterSample,
    back_in_service,
    bins,
    bins_within,
    load_of,
)
from bench.failover_load import (  # noqa: E402
    SAMPLE_SECONDS,
    STEP_REQUESTS,
    Client,
    Traffic,
    sample_commands,
    watch_sidecar,
    worker,
)
from bench.failover_report import (  # noqa: E402
    GUTTER,
    Observed,
    ProxySnapshot,
    Timeline,
    analyse,
    summary_line,
    targets,
)
from bench.prometheus import prometheus_counters  # noqa: E402
from tests.support import (  # noqa: E402
    RedisServer,
    Sidecar,
    cpu_seconds,
    sidecar_config,
    start_nutcracker,
    start_redis_servers,
    start_sidecar,
)
from tests.support.nutcracker import Nutcracker, PoolOptions  # noqa: E402
from tests.support.redis_servers import restart_redis  # noqa: E402

SHARDS = 4
VICTIM = 0  # the index of the shard that fails
BACK_FRACTION = 0.5  # back in service: the shard carries half its load from before again
SCENARIOS = ("kill", "stop")
PROXIES = ("sidecar", "twemproxy")


@dataclass(frozen=True)
class Settings:
    rate: int  # requests per second offered, all workers together
    workers: int  # half of them read first, half write first
    cycle: float  # seconds in which each worker visits each of its keys once
    before_cycles: int
    steady_cycles: int  # of the outage, after the settling time
    after_cycles: int
    check_interval_ms: int
    request_timeout_ms: int
    gutter_ttl_seconds: int
    twemproxy_failure_limit: int
    twemproxy_retry_ms: int
    client_timeout: float
    back_timeout: float

    @property
    def settle(self) -> float:
        """The outage's first seconds, left out of its load figures: the proxies' reaction
        time. It equals the SIGSTOP window target (request timeout + 0.5 s)."""
        return self.request_timeout_ms / 1000 + 0.5

    @property
    def outage(self) -> float:
        return self.settle + self.steady_cycles * self.cycle

    def shape(self, worker_index: int) -> str:
        return "read_first" if worker_index % 2 == 0 else "write_first"

    def interval(self, worker_index: int) -> float:
        """Seconds between one worker's steps, so all together offer ``rate``."""
        return STEP_REQUESTS[self.shape(worker_index)] * self.workers / self.rate

    def keys(self, worker_index: int) -> list[bytes]:
        count = max(1, round(self.cycle / self.interval(worker_index)))
        return [b"failover:%d:%d" % (worker_index, i) for i in range(count)]


# -- the processes ---------------------------------------------------------------------------


@dataclass
class Fleet:
    proxy: str
    port: int
    shards: list[RedisServer]
    gutter: RedisServer | None
    sidecar: Sidecar | None
    nutcracker: Nutcracker | None
    victim_name: str

    def servers(self) -> dict[str, RedisServer]:
        named = {f"shard-{i}": server for i, server in enumerate(self.shards)}
        if self.gutter is not None:
            named[GUTTER] = self.gutter
        return named


def sidecar_sections(s: Settings, gutter_address: str) -> dict[str, Any]:
    """The parts of the sidecar's config this benchmark sets; the rest is the default."""
    return {
        "pool": PoolConfig(request_timeout_ms=s.request_timeout_ms),
        "gutter": GutterConfig(
            enabled=True,
            ttl_seconds=s.gutter_ttl_seconds,
            shards=[ShardEndpoint(name="gutter-0", address=gutter_address)],
        ),
        "health": HealthConfig(check_interval_ms=s.check_interval_ms),
    }


def failover_config(
    shards: Sequence[RedisServer], gutter: RedisServer, s: Settings
) -> SidecarConfig:
    base = sidecar_config([server.address for server in shards])
    return base.model_copy(update=sidecar_sections(s, gutter.address))


def twemproxy_options(s: Settings) -> PoolOptions:
    return PoolOptions(
        timeout_ms=s.request_timeout_ms,
        auto_eject_hosts=True,
        failure_limit=s.twemproxy_failure_limit,
        retry_timeout_ms=s.twemproxy_retry_ms,
    )


@contextlib.contextmanager
def fleet(proxy: str, s: Settings) -> Iterator[Fleet]:
    with start_redis_servers(SHARDS + (1 if proxy == "sidecar" else 0)) as servers:
        shards = servers[:SHARDS]
        addresses = [server.address for server in shards]
        if proxy == "sidecar":
            config = failover_config(shards, servers[SHARDS], s)
            with start_sidecar(config=config) as sidecar:
                victim = config.shards[VICTIM].name
                yield Fleet(proxy, sidecar.port, shards, servers[SHARDS], sidecar, None, victim)
        else:
            options = twemproxy_options(s)
            with start_nutcracker(addresses, options, stats_interval_ms=100) as nutcracker:
                victim = addresses[VICTIM]
                yield Fleet(proxy, nutcracker.port, shards, None, None, nutcracker, victim)


def inject(fault: str, victim: RedisServer) -> None:
    if fault == "kill":
        victim.process.kill()
    else:
        victim.process.send_signal(signal.SIGSTOP)


async def restore(fault: str, victim: RedisServer) -> None:
    if fault == "kill":
        await asyncio.to_thread(restart_redis, victim)  # empty, on the same port
    else:
        victim.process.send_signal(signal.SIGCONT)  # with every value it had


async def snapshot(f: Fleet, label: str) -> ProxySnapshot:
    counters: dict[str, float] = {}
    if f.sidecar is not None:
        text = await asyncio.to_thread(f.sidecar.metrics)
        for family in ("path", "route"):
            found = prometheus_counters(text, f"cachefleet_sidecar_{family}_requests")
            counters.update({f"{family}:{name}": value for name, value in found.items()})
    pid = f.sidecar.pid if f.sidecar is not None else f.nutcracker.pid if f.nutcracker else 0
    return ProxySnapshot(label, time.monotonic(), cpu_seconds(pid), counters)


def twemproxy_stats(n: Nutcracker, victim: str) -> dict[str, Any]:
    """nutcracker's own counters: the pool's ejections and the failed server's errors."""
    try:
        with socket.create_connection(("127.0.0.1", n.stats_port), timeout=2) as sock:
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        pool = json.loads(raw)["cachefleet"]
    except (OSError, ValueError, KeyError) as error:
        return {"error": str(error)}
    server = pool.get(victim, {})
    return {
        "server_ejects": pool.get("server_ejects"),
        "victim": {k: server.get(k) for k in ("server_eof", "server_err", "server_timedout")},
    }


# -- one scenario ---------------------------------------------------------------------------


async def drive(f: Fleet, fault: str, s: Settings) -> Observed:
    traffic, timeline = Traffic(), Timeline()
    clients = [Client(f.port, s.client_timeout) for _ in range(s.workers)]
    keys = [s.keys(w) for w in range(s.workers)]
    await asyncio.gather(*(traffic.preload(c, k) for c, k in zip(clients, keys, strict=True)))

    stopping, load_stopping = asyncio.Event(), asyncio.Event()
    samples: dict[str, list[CounterSample]] = {name: [] for name in f.servers()}
    states: list[tuple[float, str]] = []
    background = [
        asyncio.create_task(sample_commands(server.port, samples[name], stopping))
        for name, server in f.servers().items()
    ]
    if f.sidecar is not None:
        watcher = watch_sidecar(f.sidecar, f.victim_name, states, stopping)
        background.append(asyncio.create_task(watcher))
    load = [
        asyncio.create_task(
            worker(traffic, clients[w], s.shape(w), keys[w], s.interval(w), load_stopping)
        )
        for w in range(s.workers)
    ]
    victim, victim_server = f.shards[VICTIM], f"shard-{VICTIM}"
    snapshots: list[ProxySnapshot] = []
    try:
        await asyncio.sleep(min(1.0, s.cycle))  # warm-up: every worker is in its rhythm
        timeline.start = time.monotonic()
        snapshots.append(await snapshot(f, "start"))
        await asyncio.sleep(s.before_cycles * s.cycle)
        snapshots.append(await snapshot(f, "fault"))
        timeline.fault = time.monotonic()
        inject(fault, victim)
        await asyncio.sleep(s.outage)
        timeline.restore = time.monotonic()
        snapshots.append(await snapshot(f, "restore"))
        await restore(fault, victim)
        timeline.restored = time.monotonic()
        victim_bins = bins_within(bins(samples[victim_server]), timeline.start, timeline.fault)
        threshold = BACK_FRACTION * load_of(victim_bins, traffic.record.sent).per_second
        deadline = timeline.restored + s.back_timeout
        while timeline.back is None and time.monotonic() < deadline:
            await asyncio.sleep(SAMPLE_SECONDS / 2)
            victim_bins = bins(samples[victim_server])
            timeline.back = back_in_service(victim_bins, timeline.restored, threshold)
        snapshots.append(await snapshot(f, "back"))
        await asyncio.sleep(s.after_cycles * s.cycle + SAMPLE_SECONDS)
        timeline.end = time.monotonic()
        snapshots.append(await snapshot(f, "end"))
    finally:
        load_stopping.set()
        await asyncio.gather(*load, return_exceptions=True)
        stopping.set()
        await asyncio.gather(*background, return_exceptions=True)
        for client in clients:
            client.close()
    stats = twemproxy_stats(f.nutcracker, f.victim_name) if f.nutcracker is not None else {}
    return Observed(
        f.proxy, fault, f.victim_name, victim_server, timeline, traffic.record, samples, states,
        snapshots, stats,
    )  # fmt: skip


def run_scenario(proxy: str, fault: str, s: Settings) -> dict[str, Any]:
    with fleet(proxy, s) as f:
        observed = asyncio.run(drive(f, fault, s))
    result = analyse(observed, s.settle)
    if proxy == "sidecar":
        result["targets"] = targets(result, s.request_timeout_ms / 1000)
    return result


# -- the run ---------------------------------------------------------------------------------


def config_report(s: Settings) -> dict[str, Any]:
    sidecar = {
        name: section.model_dump(mode="json", by_alias=True)
        for name, section in sidecar_sections(s, "gutter-0:6379").items()
    }
    sidecar["gutter"]["shards"] = ["gutter-0: one redis-server"]
    sidecar["build"] = "c" if speedups.route_requests is not None else "python"
    options = twemproxy_options(s)
    twemproxy = {
        "hash": "murmur",
        "distribution": "ketama",
        "timeout": options.timeout_ms,
        "auto_eject_hosts": options.auto_eject_hosts,
        "server_failure_limit": options.failure_limit,
        "server_retry_timeout": options.retry_timeout_ms,
        "preconnect": True,
    }
    load = {
        "rate_requests_per_second": s.rate,
        "workers": s.workers,
        "keys": sum(len(s.keys(w)) for w in range(s.workers)),
        "key_cycle_seconds": s.cycle,
        "steps": {
            "read_first": "GET k (judged), SET k <new unique value>, GET k (judged)",
            "write_first": "SET k <new unique value>, GET k (judged)",
        },
        "pacing": "open loop at a fixed rate; a late worker skips missed ticks",
        "client_timeout_s": s.client_timeout,
        "before_s": s.before_cycles * s.cycle,
        "outage_s": s.outage,
        "settle_s": s.settle,
        "after_s": s.after_cycles * s.cycle,
    }
    return {"shards": SHARDS, "sidecar": sidecar, "twemproxy": twemproxy, "load": load}


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        rate=args.rate or (1500 if args.quick else 3000),
        workers=args.workers,
        cycle=args.cycle or (1.0 if args.quick else 2.0),
        before_cycles=2,
        steady_cycles=2,
        after_cycles=2,
        check_interval_ms=args.check_interval_ms,
        request_timeout_ms=args.request_timeout_ms,
        gutter_ttl_seconds=10,
        twemproxy_failure_limit=args.twemproxy_failure_limit,
        twemproxy_retry_ms=args.twemproxy_retry_ms,
        client_timeout=3.0,
        back_timeout=30.0,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s key cycles: a smoke run")
    parser.add_argument("--rate", type=int, help="requests/s offered (default 3000; quick 1500)")
    parser.add_argument("--workers", type=int, default=24, help="load tasks (default 24)")
    parser.add_argument("--cycle", type=float, help="seconds per key cycle (default 2; quick 1)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="kill,stop")
    parser.add_argument("--proxies", default=",".join(PROXIES), help="sidecar,twemproxy")
    parser.add_argument(
        "--check-interval-ms", type=int, default=200, help="sidecar health.checkIntervalMs (200)"
    )
    parser.add_argument(
        "--request-timeout-ms",
        type=int,
        default=500,
        help="sidecar pool.requestTimeoutMs and twemproxy timeout (500)",
    )
    parser.add_argument(
        "--twemproxy-failure-limit", type=int, default=1, help="server_failure_limit (1)"
    )
    parser.add_argument(
        "--twemproxy-retry-ms", type=int, default=1000, help="server_retry_timeout (1000)"
    )
    args = parser.parse_args()
    scenarios = [x for x in args.scenarios.split(",") if x]
    proxies = [x for x in args.proxies.split(",") if x]
    if not set(scenarios) <= set(SCENARIOS) or not set(proxies) <= set(PROXIES):
        parser.error(f"--scenarios takes {','.join(SCENARIOS)}; --proxies {','.join(PROXIES)}")
    if (args.rate is not None and args.rate < 1) or args.workers < 2:
        parser.error("--rate must be positive and --workers at least 2")
    if args.cycle is not None and args.cycle <= 0:
        parser.error("--cycle must be positive")
    s = settings_from(args)
    try:
        config = config_report(s)  # before anything starts: a bad setting fails here
    except ValidationError as error:
        parser.error(f"the sidecar would refuse this config: {error}")
    if args.twemproxy_failure_limit < 1 or args.twemproxy_retry_ms < 1:
        parser.error("--twemproxy-failure-limit and --twemproxy-retry-ms must be positive")
    started = time.monotonic()
    results = [run_scenario(p, fault, s) for fault in scenarios for p in proxies]
    report = {
        "benchmark": "failover",
        "config": config,
        "scenarios": results,
        "all_targets_met": all(
            target["met"] for r in results for target in r.get("targets", {}).values()
        ),
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report))
    print(summary_line(results))
    return 0


if __name__ == "__main__":
    run(main)
