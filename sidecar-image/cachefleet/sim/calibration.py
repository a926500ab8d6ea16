"""The measured figures the model is calibrated with, each with where it was measured.

Every figure quotes the text it comes from, so the page can say where each number came from
and ``tests/sim/test_calibration.py`` can check that the quoted document still says it: when a
bench is re-run and the README's figures change, that test fails until the model follows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One number the model takes as given, and the sentence in the project that states it."""

    name: str
    value: float
    unit: str
    label: str
    document: str  # a path in the repository, or ../shared/DESIGN.md beside it
    section: str  # where in the document
    quote: str  # text that occurs verbatim in ``document`` (whitespace aside)


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
        "../shared/DESIGN.md",
        "Facts measured on this kind of machine",
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
        "../shared/DESIGN.md",
        "Facts measured on this kind of machine (Facebook, NSDI 2013)",
        "it cut client-visible failures by 99% (NSDI 2013)",
    ),
    Figure(
        "gutter_share_of_servers",
        0.01,
        "fraction",
        "Facebook's gutter pool is about 1% of the servers (NSDI 2013)",
        "../shared/DESIGN.md",
        "Facts measured on this kind of machine (Facebook, NSDI 2013)",
        "Facebook's gutter pool is about 1% of the servers",
    ),
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
