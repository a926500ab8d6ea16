"""One key takes a large share of the reads: its shard's load, with and without an L1.

Each sidecar sees only its own pod's share of the key's reads, and a key is hot (served from
the sidecar's L1) only where that share crosses ``hotKeys.thresholdPerSecond``. A hot key costs
its shard one fetch per sidecar per L1 TTL, and one more per write (every write invalidates
every sidecar's copy), never more than the sidecar's own reads of it (issue 9).

The model takes L1 as on from the moment the key is hot and a write as reaching every copy at
once: ``bench/hotkeys_celebrity.py`` measured 7.6 ms from the threshold crossed to the first L1
hit and 1.18 ms (p99) for a write to reach every sidecar, both small against a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachefleet.sim.calibration import shard_capacity
from cachefleet.sim.params import Params

CURVE_POINTS = 121


@dataclass(frozen=True)
class Celebrity:
    normal_shard_rate: float  # a shard's share of the other reads
    rate_per_sidecar: float  # the key's reads one sidecar sees
    hot: bool  # above the threshold at each sidecar
    l1_from_fleet_rate: float  # the key's fleet-wide rate at which L1 starts
    shard_capacity: float
    hot_shard_rate_without_l1: float
    hot_shard_rate_with_l1: float
    utilisation_without_l1: float
    utilisation_with_l1: float
    share_reaching_shard: float  # of the key's reads, with L1 (issue 9's target: ≤ 10%)
    overload_from_rate: float  # the key's fleet-wide rate that saturates the shard without L1
    threshold_to_protect_shard: float  # the highest per-sidecar threshold that starts L1 in time
    curve_rate: list[float]
    curve_without_l1: list[float]
    curve_with_l1: list[float]


def _key_load_on_shard(p: Params, key_rate: float, with_l1: bool) -> float:
    per_sidecar = key_rate / p.app_pods
    if not with_l1 or per_sidecar < p.hot_threshold:
        return key_rate + p.celebrity_writes
    refetches = min(per_sidecar, 1000.0 / p.l1_ttl_ms + p.celebrity_writes)
    return p.app_pods * refetches + p.celebrity_writes


def celebrity(p: Params) -> Celebrity:
    normal = p.request_rate / p.shards
    capacity = shard_capacity(p.pipeline)
    without = normal + _key_load_on_shard(p, p.celebrity_rate, False)
    with_l1 = normal + _key_load_on_shard(p, p.celebrity_rate, True)
    l1_from = p.hot_threshold * p.app_pods
    overload_from = max(0.0, capacity - normal - p.celebrity_writes)
    top = max(2.0 * p.celebrity_rate, 1.5 * l1_from, 1.5 * overload_from, 1000.0)
    rates = [top * i / (CURVE_POINTS - 1) for i in range(CURVE_POINTS)]
    reads = p.celebrity_rate
    return Celebrity(
        normal_shard_rate=normal,
        rate_per_sidecar=p.celebrity_rate / p.app_pods,
        hot=p.celebrity_rate / p.app_pods >= p.hot_threshold,
        l1_from_fleet_rate=l1_from,
        shard_capacity=capacity,
        hot_shard_rate_without_l1=without,
        hot_shard_rate_with_l1=with_l1,
        utilisation_without_l1=without / capacity,
        utilisation_with_l1=with_l1 / capacity,
        share_reaching_shard=(with_l1 - normal - p.celebrity_writes) / reads if reads > 0 else 0.0,
        overload_from_rate=overload_from,
        threshold_to_protect_shard=overload_from / p.app_pods,
        curve_rate=rates,
        curve_without_l1=[normal + _key_load_on_shard(p, r, False) for r in rates],
        curve_with_l1=[normal + _key_load_on_shard(p, r, True) for r in rates],
    )
