"""Counters the hot path bumps in plain dicts and lists; the admin endpoint reads them at scrape.

A prometheus-client ``Counter.inc`` costs about a microsecond with its lock and label look-up,
several times the rest of a request's routing cost, so the hot path only does dict arithmetic.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Protocol

from cachefleet.sidecar.commands import CommandSpec
from cachefleet.sidecar.speedups import make_latency

# Seconds; a shard round trip on loopback is ~50 µs, a slow one is several ms.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)


# Finer bounds for the health monitor's percentiles: 50 µs to about 10 s, each 25% above the
# last, so a p99 read from them is within 25% (a sample list would cost the fast path more).
HEALTH_BUCKETS: tuple[float, ...] = tuple(0.00005 * 1.25**i for i in range(56))


def new_window() -> list[int]:
    return [0] * (len(HEALTH_BUCKETS) + 1)


class LatencyHistogram(Protocol):
    """What the shard connections, the admin endpoint and the health monitor use of a
    histogram: ``Latency`` below, or its C version ``_speedups.Latency``."""

    @property
    def buckets(self) -> list[int]: ...
    @property
    def total(self) -> float: ...
    @property
    def count(self) -> int: ...
    def observe(self, seconds: float) -> None: ...
    def take_window(self) -> list[int]: ...


@dataclass
class Latency:
    """A histogram of shard round trips (one observation per batch written to a shard), and the
    round trips since the health monitor's last look, in ``HEALTH_BUCKETS``. The reference of
    ``_speedups.Latency``, whose observe a shard connection's C reader calls without a frame."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0
    window: list[int] = field(default_factory=new_window)

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1
        self.window[bisect.bisect_left(HEALTH_BUCKETS, seconds)] += 1

    def take_window(self) -> list[int]:
        window, self.window = self.window, new_window()
        return window


def new_latency() -> LatencyHistogram:
    if make_latency is not None:
        return make_latency(LATENCY_BUCKETS, HEALTH_BUCKETS)
    return Latency()


@dataclass
class ShardStats:
    c_requests: dict[CommandSpec, int] = field(default_factory=dict)  # the C loop
    python_requests: dict[CommandSpec, int] = field(default_factory=dict)  # the Python paths
    latency: LatencyHistogram = field(default_factory=new_latency)


@dataclass
class Stats:
    shards: dict[str, ShardStats] = field(default_factory=dict)
    local_requests: dict[CommandSpec, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    client_connections: int = 0
    client_connections_total: int = 0
    config_version: str = ""
    config_reloads: int = 0
    config_reload_failures: int = 0
    routes: dict[str, int] = field(default_factory=dict)  # requests per route unit
    ejections: dict[tuple[str, str], int] = field(default_factory=dict)  # (shard, cause)
    readmissions: dict[str, int] = field(default_factory=dict)  # by shard

    def shard(self, name: str) -> ShardStats:
        stats = self.shards.get(name)
        if stats is None:
            stats = self.shards[name] = ShardStats()
        return stats

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def route(self, unit: str) -> None:
        self.routes[unit] = self.routes.get(unit, 0) + 1
