"""A capacity change (``resize_from`` → ``resize_to`` shards): the database's load over time.

- ``modulo``: ``hash % N`` clients switch at once; most keys change owner.
- ``consistent``: a ketama ring (classic tokens) switches at once.
- ``planned``: the operator's planned ring switches at once (the least movement possible).
- ``warmup``: the planned ring with the operator's warm-up. Reads of moved keys are shadowed to
  their new owner for a growing share of the keys (chosen by key hash, so by popularity it is a
  fair sample), and a shadowed read that misses there is filled from the old owner, not the
  database. The operator cuts over once the ramp is done and the moved keys' warm hit ratio
  reaches ``cutoverHitRatio`` (or at the timeout); for ``graceSeconds`` after that a miss on
  the new owner is retried on the old one, so only what is still cold after the grace period
  reaches the database (issue 8).

"Warm hit ratio" here is the share of shadowed reads whose key the new owner holds: the steady
misses that the old owner has too are not counted against the warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cachefleet.sim.load import Keyspace, Phase, extra_reads, peak_rate, series, time_grid
from cachefleet.sim.params import WARMUP_STEPS_PERCENT, Params
from cachefleet.sim.popularity import Bucket
from cachefleet.sim.rings import ResizeRing
from cachefleet.sim.ttlcache import read_share

STRATEGIES = ("modulo", "consistent", "planned", "warmup")
BEFORE_S = 30.0
AFTER_S = 600.0
POINTS = 481


@dataclass(frozen=True)
class Ramp:
    """The shadow ramp: step k starts at ``starts[k]`` and adds ``added[k]`` of the keys."""

    starts: list[float]
    added: list[float]

    def warm_hit_ratio(self, buckets: list[Bucket], rate: float, t: float) -> float:
        warm = shadowed = 0.0
        for start, added in zip(self.starts, self.added, strict=True):
            if start <= t:
                shadowed += added
                warm += added * read_share(buckets, rate, t - start)
        return warm / shadowed if shadowed > 0 else 0.0


def ramp(step_seconds: float) -> Ramp:
    starts, added, previous = [], [], 0.0
    for index, percent in enumerate(WARMUP_STEPS_PERCENT):
        starts.append(index * step_seconds)
        added.append((percent - previous) / 100.0)
        previous = percent
    return Ramp(starts, added)


def cutover_time(p: Params, buckets: list[Bucket], steps: Ramp) -> tuple[float, bool]:
    """The first whole second after the ramp at which the warm hit ratio reaches the target,
    and whether the timeout decided instead. The ratio only grows once the ramp is complete,
    so a bisection finds that second."""
    ramp_done = len(steps.starts) * p.step_seconds
    timeout = p.warmup_timeout_s
    if ramp_done >= timeout:
        return timeout, True

    def warm_enough(t: float) -> bool:
        return steps.warm_hit_ratio(buckets, p.request_rate, t) >= p.cutover_hit_ratio

    if warm_enough(ramp_done):
        return ramp_done, False
    if not warm_enough(timeout):
        return timeout, True
    low, high = ramp_done, timeout
    while high - low > 1:
        middle = math.floor((low + high) / 2)
        if warm_enough(middle):
            high = middle
        else:
            low = middle
    return high, False


@dataclass(frozen=True)
class ResizeOutcome:
    moved_share: float
    cutover_s: float
    new_owner_miss_share: float  # of the moved keys' reads, at cut-over
    peak_database_rate: float
    peak_ratio: float
    extra_database_reads: float
    database_rate: list[float]


@dataclass(frozen=True)
class CapacityChange:
    baseline_database_rate: float
    ideal_moved_share: float
    ramp_done_s: float
    cutover_by_timeout: bool
    warm_hit_ratio_at_cutover: float
    time: list[float]
    strategies: dict[str, ResizeOutcome]


def capacity_change(p: Params, buckets: list[Bucket], ring: ResizeRing) -> CapacityChange:
    keys = Keyspace(buckets, p.request_rate, p.key_ttl_s)
    baseline = keys.baseline
    steps = ramp(p.step_seconds)
    cutover, by_timeout = cutover_time(p, buckets, steps)
    grace_end = cutover + p.grace_s
    end = grace_end + AFTER_S
    grid = time_grid(-BEFORE_S, end, (0.0, cutover, grace_end), POINTS)
    # Each step's keys have been warming since the step started, or start cold at cut-over if
    # the timeout came before their step.
    warm_since = tuple(
        (added, min(start, cutover)) for start, added in zip(steps.starts, steps.added, strict=True)
    )
    warm_share = sum(
        added * read_share(buckets, p.request_rate, cutover - since) for added, since in warm_since
    )
    moved = {
        "modulo": ring.modulo_moved,
        "consistent": ring.classic_moved,
        "planned": ring.planned_moved,
        "warmup": ring.planned_moved,
    }
    outcomes: dict[str, ResizeOutcome] = {}
    for strategy in STRATEGIES:
        share = moved[strategy]
        if strategy == "warmup":
            phases = [Phase(-BEFORE_S), Phase(grace_end, share, "cold", p.key_ttl_s, warm_since)]
            at_cutover, miss_share = cutover, 1.0 - warm_share
        else:
            phases = [Phase(-BEFORE_S), Phase(0.0, share, "cold", p.key_ttl_s, ((1.0, 0.0),))]
            at_cutover, miss_share = 0.0, 1.0
        peak = peak_rate(keys, baseline, phases)
        outcomes[strategy] = ResizeOutcome(
            moved_share=share,
            cutover_s=at_cutover,
            new_owner_miss_share=miss_share,
            peak_database_rate=peak,
            peak_ratio=peak / baseline,
            extra_database_reads=extra_reads(keys, baseline, phases, phases[0].start, end),
            database_rate=series(keys, baseline, phases, grid),
        )
    return CapacityChange(
        baseline_database_rate=baseline,
        ideal_moved_share=ring.ideal_moved,
        ramp_done_s=len(steps.starts) * p.step_seconds,
        cutover_by_timeout=by_timeout,
        warm_hit_ratio_at_cutover=warm_share,
        time=grid,
        strategies=outcomes,
    )
