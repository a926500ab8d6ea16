"""The measured figures the model is calibrated with, each with where it was measured.

Every figure quotes the text it comes from, so the page can say where each number came from
and ``tests/sim/test_calibration.py`` can check that the quoted document still says it: when a
bench is re-run and the README's figures change, that test fails until the model follows.

A figure is an ``input`` when the model computes with it, or a ``check`` when it is a bench's
result the model's own figure is compared with: the benches run smaller setups than a fleet
(one machine, a few shards, thousands of requests a second), so those are shown beside the
model's numbers rather than forced into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

INPUT: Literal["input"] = "input"
CHECK: Literal["check"] = "check"


@dataclass(frozen=True)
class Figure:
    """One number the model takes as given, and the sentence in the project that states it."""

    name: str
    value: float
    unit: str
    label: str
    document: str  # a path in the repository
    section: str  # where in the document
    quote: str  # text that occurs verbatim in ``document`` (whitespace aside)
    role: Literal["input", "check"] = INPUT


CLIENT_BENCH = "Figures: the smart client, the sidecar and Redis directly (bench/client.py)"
FAILOVER_BENCH = "Figures: shard failures against twemproxy (bench/failover.py)"
WARMUP_BENCH = "Figures: capacity changes, the rehashing storm (bench/warmup.py)"
HOT_KEYS_BENCH = "Figures: hot keys (bench/hotkeys_celebrity.py)"

HOP: tuple[Figure, ...] = (
    Figure(
        "sidecar_hop_us",
        72.4,
        "µs",
        "the sidecar's hop on an idle sidecar: one redis-py connection through it, less the same "
        "straight to Redis, p50 (client, sidecar and Redis on 2 shared cores)",
        "README.md",
        CLIENT_BENCH,
        "The sidecar's hop adds 72.4 µs at p50",
    ),
    Figure(
        "python_client_added_us",
        23.7,
        "µs",
        "what cachefleet's Python smart client (ShardedRedis) adds to each call over plain "
        "redis-py, p50: its command table, key extraction and ring look-up",
        "README.md",
        CLIENT_BENCH,
        "The smart client's routing adds 23.7 µs",
    ),
)

FAILOVER: tuple[Figure, ...] = (
    Figure(
        "sidecar_eject_ms",
        31,
        "ms",
        "a killed shard (kill -9) out of the sidecar's ring: the default detection time",
        "README.md",
        FAILOVER_BENCH,
        "The shard was out of the ring 31 ms after the kill",
    ),
    Figure(
        "sidecar_kill_error_window_s",
        0.003,
        "s",
        "the sidecar's error window after kill -9 (only writes in flight failed; reads were "
        "retried on the gutter)",
        "README.md",
        FAILOVER_BENCH,
        "| sidecar, kill -9 | 0.003 s (target ≤ 0.25 s) |",
        CHECK,
    ),
    Figure(
        "sidecar_stop_error_window_s",
        0.566,
        "s",
        "the sidecar's error window for a hung shard (SIGSTOP): the request timeout decides",
        "README.md",
        FAILOVER_BENCH,
        "| sidecar, SIGSTOP | 0.566 s (target ≤ 0.5 + 0.5 s) |",
        CHECK,
    ),
    Figure(
        "twemproxy_kill_error_window_s",
        4.02,
        "s",
        "twemproxy's error window after kill -9 (auto_eject_hosts, a ketama ring)",
        "README.md",
        FAILOVER_BENCH,
        "| twemproxy, kill -9 | 4.02 s |",
        CHECK,
    ),
)

WARMUP: tuple[Figure, ...] = (
    Figure(
        "warmup_modulo_missed",
        0.795,
        "fraction",
        "4 → 5 shards by hash % N: keys that missed because of the change",
        "README.md",
        WARMUP_BENCH,
        "| `hash % N` | 79.5% |",
        CHECK,
    ),
    Figure(
        "warmup_immediate_peak",
        1.73,
        "× baseline",
        "4 → 5 shards on the sidecar's ring, immediate cut-over: peak database loads (5 s average)",
        "README.md",
        WARMUP_BENCH,
        "| consistent hashing, immediate cut-over | 17.0% | 176 → 304 | 1.73× |",
        CHECK,
    ),
    Figure(
        "warmup_peak",
        1.08,
        "× baseline",
        "4 → 5 shards with the operator's warm-up: peak database loads (5 s average)",
        "README.md",
        WARMUP_BENCH,
        "| consistent hashing, the operator's warm-up | 0.0% | 177 → 192 | **1.08×** |",
        CHECK,
    ),
)

HOT_KEYS: tuple[Figure, ...] = (
    Figure(
        "l1_throughput_ratio",
        3.1,
        "×",
        "a celebrity's GETs/s through one sidecar, L1 on ÷ off (its shard held to 5% of a core)",
        "README.md",
        HOT_KEYS_BENCH,
        "| 55,939 / 18,042: **3.1×** |",
        CHECK,
    ),
    Figure(
        "l1_share_reaching_shard",
        0.004,
        "fraction",
        "the celebrity's GETs that still reached its shard with L1 (the whole run, detection "
        "included)",
        "README.md",
        HOT_KEYS_BENCH,
        "| share of the celebrity's GETs that still reach its shard, L1 on | 0.4% |",
        CHECK,
    ),
    Figure(
        "l1_detection_ms",
        7.6,
        "ms",
        "from the key's rate crossing the threshold to its first L1 hit",
        "README.md",
        HOT_KEYS_BENCH,
        "| from the threshold crossed to the first L1 hit | 7.6 ms |",
        CHECK,
    ),
    Figure(
        "l1_invalidation_p99_ms",
        1.18,
        "ms",
        "a write straight to the shard until no sidecar's L1 returns the old value, p99",
        "README.md",
        HOT_KEYS_BENCH,
        "| 0.90 / 1.18 / 1.51 ms |",
        CHECK,
    ),
)

FIGURES: tuple[Figure, ...] = (
    Figure(
        "sidecar_cpu_us_p1",
        16.3,
        "µs/request",
        "sidecar CPU per request, pipeline 1, every feature on (2026-12-01 14:30 run)",
        "README.md",
        "Figures: the sidecar against twemproxy, latest run (35939e7), CPU µs/req",
        "| sidecar, every feature on | 53,950 | 1.81 ms | 267,314 | 4.54 ms | 16.3, 3.15 |",
    ),
    Figure(
        "sidecar_cpu_us_p16",
        3.15,
        "µs/request",
        "sidecar CPU per request, pipeline 16, every feature on (the same run)",
        "README.md",
        "Figures: the sidecar against twemproxy, latest run (35939e7), CPU µs/req",
        "| sidecar, every feature on | 53,950 | 1.81 ms | 267,314 | 4.54 ms | 16.3, 3.15 |",
    ),
    Figure(
        "twemproxy_cpu_us_p1",
        12.7,
        "µs/request",
        "twemproxy CPU per request, pipeline 1 (the same run)",
        "README.md",
        "Figures: the sidecar against twemproxy, latest run (35939e7), CPU µs/req",
        "| twemproxy | 57,579 | 1.36 ms | 252,605 | 5.30 ms | 12.7, 3.39 |",
    ),
    Figure(
        "twemproxy_cpu_us_p16",
        3.39,
        "µs/request",
        "twemproxy CPU per request, pipeline 16 (the same run)",
        "README.md",
        "Figures: the sidecar against twemproxy, latest run (35939e7), CPU µs/req",
        "| twemproxy | 57,579 | 1.36 ms | 252,605 | 5.30 ms | 12.7, 3.39 |",
    ),
    Figure(
        "redis_rps_p1",
        100_799,
        "requests/s",
        "one Redis server driven directly, pipeline 1 (the same run): a shard's capacity",
        "README.md",
        "Figures: the sidecar against twemproxy, latest run (35939e7)",
        "| Redis directly | 100,799 | 0.56 ms | 500,968 | 2.59 ms | |",
    ),
    Figure(
        "redis_rps_p16",
        500_968,
        "requests/s",
        "one Redis server driven directly, pipeline 16 (the same run)",
        "README.md",
        "Figures: the sidecar against twemproxy, latest run (35939e7)",
        "| Redis directly | 100,799 | 0.56 ms | 500,968 | 2.59 ms | |",
    ),
    Figure(
        "route_cost_us",
        0.13,
        "µs/request",
        "a smart client's routing cost: MurmurHash3 plus the ring look-up, in Python",
        "docs/simulator.md",
        "Where the figures come from: from outside this repository",
        "mmh3 hash plus ring lookup about 0.13 µs",
    ),
    Figure(
        "connection_bytes_active",
        28_915,
        "bytes",
        "Redis memory per client connection in use (its query buffer allocated)",
        "docs/simulator.md",
        "Connection memory (bench/connection_memory.py)",
        "28,915 bytes per connection in use",
    ),
    Figure(
        "connection_bytes_idle",
        1_800,
        "bytes",
        "Redis memory per idle client connection (after clientsCron shrinks the query buffer)",
        "docs/simulator.md",
        "Connection memory (bench/connection_memory.py)",
        "1,800 bytes once idle",
    ),
    Figure(
        "redis_maxclients",
        10_000,
        "connections",
        "Redis's default maxclients: connections beyond it are refused",
        "docs/simulator.md",
        "Where the figures come from (redis.conf's default)",
        "`maxclients 10000`",
    ),
    Figure(
        "gutter_failure_reduction",
        0.99,
        "fraction",
        "Facebook's gutter pool cut client-visible failures by 99% (NSDI 2013); a cross-check",
        "docs/simulator.md",
        "Where the figures come from: from outside this repository (NSDI 2013)",
        "it cut client-visible failures by 99% (NSDI 2013)",
        CHECK,
    ),
    Figure(
        "gutter_share_of_servers",
        0.01,
        "fraction",
        "Facebook's gutter pool is about 1% of the servers (NSDI 2013)",
        "docs/simulator.md",
        "Where the figures come from: from outside this repository (NSDI 2013)",
        "Facebook's gutter pool is about 1% of the servers",
        CHECK,
    ),
    *HOP,
    *FAILOVER,
    *WARMUP,
    *HOT_KEYS,
)

FIGURE = {figure.name: figure for figure in FIGURES}


def figure(name: str) -> float:
    return FIGURE[name].value


def sidecar_cpu_us(pipeline: float) -> float:
    """The sidecar's CPU time per request at the nearer of the two measured pipeline depths."""
    return figure("sidecar_cpu_us_p16" if pipeline >= 16 else "sidecar_cpu_us_p1")


def twemproxy_cpu_us(pipeline: float) -> float:
    return figure("twemproxy_cpu_us_p16" if pipeline >= 16 else "twemproxy_cpu_us_p1")


def shard_capacity(pipeline: float) -> float:
    """Requests per second one Redis server answered in the sidecar bench's run."""
    return figure("redis_rps_p16" if pipeline >= 16 else "redis_rps_p1")
