"""The extra hop: what a request pays to go through the sidecar, and what routing costs.

The hop on an idle sidecar is what ``bench/client.py`` measured end to end: one redis-py
connection through the sidecar less the same straight to Redis, at p50 (a second loopback round
trip, the sidecar's work and two more wake-ups). Under load the sidecar is one event loop on one
core, taken as an M/M/1 queue whose service time is its measured CPU per request at the chosen
pipeline depth; the queue's wait is added on top (the measured hop already holds one service).

Client-side sharding pays its routing in the app instead, two ways: a compiled smart client
pays the hash and ring look-up (0.13 µs, from the project's design notes), while cachefleet's
own Python client (``ShardedRedis``) measured 23.7 µs more per call than plain redis-py, most
of it Python running on the app's core, so its CPU figure is an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachefleet.sim.calibration import figure, shard_capacity, sidecar_cpu_us, twemproxy_cpu_us
from cachefleet.sim.params import Params

CURVE_POINTS = 96
CURVE_TOP_UTILISATION = 0.95


def hop_us(rate_per_pod: float, pipeline: float) -> float:
    """The hop's latency in µs at this per-pod load; infinite once the sidecar saturates."""
    service = sidecar_cpu_us(pipeline)
    utilisation = rate_per_pod * service / 1e6
    if utilisation >= 1.0:
        return float("inf")
    return figure("sidecar_hop_us") + service * utilisation / (1.0 - utilisation)


@dataclass(frozen=True)
class Latency:
    rate_per_pod: float
    sidecar_utilisation: float
    sidecar_saturation_rate: float  # requests/s one sidecar can take at this pipeline depth
    hop_us: float | None  # None once saturated
    direct_us: float  # network round trip plus Redis's time per request: no routing at all
    client_side_us: float  # a compiled smart client: direct plus its hash and ring look-up
    python_client_us: float  # cachefleet's Python smart client: direct plus its measured cost
    sidecar_us: float | None
    overhead: float | None  # sidecar ÷ compiled client-side − 1
    sidecar_cores: float  # CPU cores all sidecars use at the fleet's rate
    twemproxy_cores: float  # the same load through twemproxy, for scale
    smart_client_cores: float  # a compiled smart client routing inside the app instead
    python_client_cores: float  # cachefleet's Python client, at most (its added time as CPU)
    curve_rate_per_pod: list[float]
    curve_hop_us: list[float]


def latency(p: Params) -> Latency:
    rate_per_pod = p.request_rate / p.app_pods
    service = sidecar_cpu_us(p.pipeline)
    saturation = 1e6 / service
    hop = hop_us(rate_per_pod, p.pipeline)
    direct = p.network_rtt_us + 1e6 / shard_capacity(p.pipeline)
    client_side = direct + figure("route_cost_us")
    finite = hop != float("inf")
    rates = [
        saturation * CURVE_TOP_UTILISATION * i / (CURVE_POINTS - 1) for i in range(CURVE_POINTS)
    ]
    return Latency(
        rate_per_pod=rate_per_pod,
        sidecar_utilisation=rate_per_pod / saturation,
        sidecar_saturation_rate=saturation,
        hop_us=hop if finite else None,
        direct_us=direct,
        client_side_us=client_side,
        python_client_us=direct + figure("python_client_added_us"),
        sidecar_us=direct + hop if finite else None,
        overhead=(direct + hop) / client_side - 1.0 if finite else None,
        sidecar_cores=p.request_rate * service / 1e6,
        twemproxy_cores=p.request_rate * twemproxy_cpu_us(p.pipeline) / 1e6,
        smart_client_cores=p.request_rate * figure("route_cost_us") / 1e6,
        python_client_cores=p.request_rate * figure("python_client_added_us") / 1e6,
        curve_rate_per_pod=rates,
        curve_hop_us=[hop_us(rate, p.pipeline) for rate in rates],
    )
