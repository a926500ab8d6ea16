"""A cache node fails for ``outage_s`` seconds, then comes back. Four ways to live through it:

- ``none``: no failover; reads of the dead node fail and the app loads them from the database.
- ``modulo``: clients drop the node from their list and re-hash ``hash % (N−1)``.
- ``consistent``: clients (or twemproxy's auto-eject) drop the node from a ketama ring, so its
  keys land on its ring neighbours.
- ``gutter``: the sidecar ejects the node and sends its keys to the gutter pool, whose values
  live ``gutter.ttlSeconds`` (Facebook's pattern, issue 7).

Every strategy loses the node's reads until the failure is detected (``detection_s``: by default
what ``bench/failover.py`` measured for the sidecar and a killed shard). One detection time for
all four flatters the others when they stand for twemproxy, which took seconds in that bench;
and the sidecar retries a failed read on the gutter before it ejects the shard (its error
window was shorter than its detection), which the model does not credit.

When the node returns it is empty (a restart), or has its old data (it was hung or cut off):
then the keys that moved away and back can be read stale if they were written meanwhile. The
gutter's sidecar must never do that (issue 7, part 4); the model takes the costliest way it
can: the node's keys start empty again.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachefleet.sim.calibration import shard_capacity
from cachefleet.sim.load import Keyspace, Phase, extra_reads, peak_rate, series, time_grid
from cachefleet.sim.params import Params
from cachefleet.sim.popularity import Bucket
from cachefleet.sim.rings import FailureRing
from cachefleet.sim.ttlcache import stale_read_rate, stale_reads

STRATEGIES = ("none", "modulo", "consistent", "gutter")
BEFORE_S = 10.0
AFTER_S = 120.0
POINTS = 401


@dataclass(frozen=True)
class FailureOutcome:
    failed_share: float  # of reads, lost until detection (for `none`: the whole outage)
    moved_share: float  # of reads served elsewhere during the outage
    failed_reads: float
    extra_database_reads: float  # above the steady baseline, over the whole window
    peak_database_rate: float
    peak_ratio: float  # peak ÷ baseline
    stale_share: float  # of reads, that can find a stale copy after the return
    stale_reads: float
    stale_read_rate_at_return: float
    busiest_server_rate: float  # the most loaded surviving shard or gutter server
    busiest_server_utilisation: float  # ÷ a shard's measured capacity
    database_rate: list[float]


@dataclass(frozen=True)
class Failure:
    baseline_database_rate: float
    steady_hit_ratio: float
    gutter_failure_reduction: float  # 1 − gutter's failed reads ÷ none's: Facebook saw 0.99
    time: list[float]
    strategies: dict[str, FailureOutcome]


def _phases(p: Params, strategy: str, failed: float, moved: float) -> list[Phase]:
    detect, back = p.detection_s, p.outage_s
    ttl = p.gutter_ttl_s if strategy == "gutter" else p.key_ttl_s
    during = (
        Phase(detect, failed, "database")
        if strategy == "none"
        else Phase(detect, moved, "cold", ttl, ((1.0, detect),))
    )
    comes_back_empty = strategy == "gutter" or p.returns_with_data == 0
    after = (
        Phase(back, failed, "cold", p.key_ttl_s, ((1.0, back),))
        if comes_back_empty
        else Phase(back)
    )
    return [Phase(-BEFORE_S), Phase(0.0, failed, "database"), during, after]


def _stale_share(p: Params, strategy: str, failed: float, moved: float) -> float:
    if strategy == "gutter":
        return 0.0
    if p.returns_with_data == 0:
        # An empty node holds nothing stale, but under modulo the other moved keys go back to
        # live nodes that still hold their copies from before the failure.
        return moved - failed if strategy == "modulo" else 0.0
    return moved if strategy != "none" else failed


def failure(p: Params, buckets: list[Bucket], ring: FailureRing) -> Failure:
    keys = Keyspace(buckets, p.request_rate, p.key_ttl_s)
    baseline = keys.baseline
    end = p.outage_s + AFTER_S
    grid = time_grid(-BEFORE_S, end, (0.0, p.detection_s, p.outage_s), POINTS)
    capacity = shard_capacity(p.pipeline)
    rate, shards = p.request_rate, p.shards
    shares = {
        "none": (ring.planned_failed_share, 0.0),
        "modulo": (1.0 / shards, ring.modulo_moved),
        "consistent": (ring.classic_failed_share, ring.classic_moved),
        "gutter": (ring.planned_failed_share, ring.planned_failed_share),
    }
    busiest = {
        "none": rate / shards,
        "modulo": rate / (shards - 1),
        "consistent": rate * ring.classic_busiest_share_after,
        "gutter": max(rate / shards, rate * ring.planned_failed_share / p.gutter_size),
    }
    outcomes: dict[str, FailureOutcome] = {}
    for strategy in STRATEGIES:
        failed, moved = shares[strategy]
        phases = _phases(p, strategy, failed, moved)
        lost_for = p.outage_s if strategy == "none" else p.detection_s
        stale_share = _stale_share(p, strategy, failed, moved)
        peak = peak_rate(keys, baseline, phases)
        outcomes[strategy] = FailureOutcome(
            failed_share=failed,
            moved_share=moved,
            failed_reads=rate * failed * lost_for,
            extra_database_reads=extra_reads(keys, baseline, phases, phases[0].start, end),
            peak_database_rate=peak,
            peak_ratio=peak / baseline,
            stale_share=stale_share,
            stale_reads=stale_share
            * stale_reads(buckets, rate, p.write_ratio, p.key_ttl_s, p.outage_s),
            stale_read_rate_at_return=stale_share
            * stale_read_rate(buckets, rate, p.write_ratio, p.key_ttl_s, p.outage_s, 0.0),
            busiest_server_rate=busiest[strategy],
            busiest_server_utilisation=busiest[strategy] / capacity,
            database_rate=series(keys, baseline, phases, grid),
        )
    return Failure(
        baseline_database_rate=baseline,
        steady_hit_ratio=1.0 - baseline / rate,
        gutter_failure_reduction=1.0
        - outcomes["gutter"].failed_reads / outcomes["none"].failed_reads,
        time=grid,
        strategies=outcomes,
    )
