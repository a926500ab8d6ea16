"""The extra hop: what a request pays to go through the sidecar, and what the sidecars cost.

The hop's own time is the sidecar's measured CPU per request at pipeline 1 (on loopback nearly
all of it is the work on the path: 74% is the kernel's socket work). Under load the sidecar is
one event loop on one core, taken as an M/M/1 queue whose service time is the measured CPU per
request at the chosen pipeline depth.
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
    return sidecar_cpu_us(1) + service * utilisation / (1.0 - utilisation)


@dataclass(frozen=True)
class Latency:
    rate_per_pod: float
    sidecar_utilisation: float
    sidecar_saturation_rate: float  # requests/s one sidecar can take at this pipeline depth
    hop_us: float | None  # None once saturated
    client_side_us: float  # network round trip plus Redis's time per request
    sidecar_us: float | None
    overhead: float | None  # sidecar ÷ client-side − 1
    sidecar_cores: float  # CPU cores all sidecars use at the fleet's rate
    twemproxy_cores: float  # the same load through twemproxy, for scale
    smart_client_cores: float  # routing inside the app instead
    curve_rate_per_pod: list[float]
    curve_hop_us: list[float]


def latency(p: Params) -> Latency:
    rate_per_pod = p.request_rate / p.app_pods
    service = sidecar_cpu_us(p.pipeline)
    saturation = 1e6 / service
    hop = hop_us(rate_per_pod, p.pipeline)
    client_side = p.network_rtt_us + 1e6 / shard_capacity(p.pipeline)
    finite = hop != float("inf")
    rates = [
        saturation * CURVE_TOP_UTILISATION * i / (CURVE_POINTS - 1) for i in range(CURVE_POINTS)
    ]
    return Latency(
        rate_per_pod=rate_per_pod,
        sidecar_utilisation=rate_per_pod / saturation,
        sidecar_saturation_rate=saturation,
        hop_us=hop if finite else None,
        client_side_us=client_side,
        sidecar_us=client_side + hop if finite else None,
        overhead=hop / client_side if finite else None,
        sidecar_cores=p.request_rate * service / 1e6,
        twemproxy_cores=p.request_rate * twemproxy_cpu_us(p.pipeline) / 1e6,
        smart_client_cores=p.request_rate * figure("route_cost_us") / 1e6,
        curve_rate_per_pod=rates,
        curve_hop_us=[hop_us(rate, p.pipeline) for rate in rates],
    )
