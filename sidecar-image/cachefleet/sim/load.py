"""Database load over time as a sequence of phases, integrated exactly, shown per second.

In each phase a share of the read traffic behaves one way (the rest stays in steady state):
``base`` (nothing special), ``database`` (every read of the share goes to the database: failed
reads an app loads from the database), or ``cold`` (the share is served by owners that started
empty, each component ``weight`` of it at time ``since``). A read-through cache turns every
miss into a database read, so this is also the miss rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cachefleet.sim.popularity import Bucket
from cachefleet.sim.ttlcache import cold_misses, steady_miss_rate

AVERAGE_S = 1.0  # database load is reported per second, as counters would show it


@dataclass(frozen=True)
class Phase:
    start: float
    share: float = 0.0
    mode: str = "base"  # base | database | cold
    ttl: float = 0.0
    components: tuple[tuple[float, float], ...] = field(default=())  # (weight, since)


@dataclass(frozen=True)
class Keyspace:
    buckets: Sequence[Bucket]
    rate: float  # reads per second, whole fleet
    ttl: float  # the app's TTL: what steady state means

    @property
    def baseline(self) -> float:
        return steady_miss_rate(self.buckets, self.rate, self.ttl)


def extra_reads(
    keys: Keyspace, baseline: float, phases: Sequence[Phase], start: float, end: float
) -> float:
    """Database reads above the steady baseline between ``start`` and ``end``, exactly."""
    total = 0.0
    for index, phase in enumerate(phases):
        stop = phases[index + 1].start if index + 1 < len(phases) else end
        low, high = max(start, phase.start), min(end, stop)
        if high <= low:
            continue
        if phase.mode == "database":
            total += phase.share * (keys.rate - baseline) * (high - low)
        elif phase.mode == "cold":
            reads = 0.0
            for weight, since in phase.components:
                reads += weight * (
                    cold_misses(keys.buckets, keys.rate, phase.ttl, high - since)
                    - cold_misses(keys.buckets, keys.rate, phase.ttl, low - since)
                )
            total += phase.share * (reads - baseline * (high - low))
    return total


def per_second(keys: Keyspace, baseline: float, phases: Sequence[Phase], t: float) -> float:
    """The database's reads per second over the second that ends at ``t``: what a dashboard
    of per-second counters shows (the instantaneous rate right after a cut-over is a spike of
    every moved read missing at once, gone within milliseconds for the popular keys)."""
    return baseline + extra_reads(keys, baseline, phases, t - AVERAGE_S, t)


def peak_rate(keys: Keyspace, baseline: float, phases: Sequence[Phase]) -> float:
    """Each phase's load is highest where it starts (cold owners only warm up), so the peak
    per-second figure is the second that starts with some phase."""
    peak = baseline
    for phase in phases:
        peak = max(peak, per_second(keys, baseline, phases, phase.start + AVERAGE_S))
    return peak


def time_grid(start: float, end: float, events: Sequence[float], points: int) -> list[float]:
    """Evenly spaced points, plus each event and the second after it (where the per-second
    figure peaks), so no chart misses a peak between two points."""
    grid = [start + (end - start) * i / (points - 1) for i in range(points)]
    for event in events:
        grid += [t for t in (event, event + AVERAGE_S) if start < t < end]
    return sorted(set(grid))


def series(
    keys: Keyspace, baseline: float, phases: Sequence[Phase], grid: Sequence[float]
) -> list[float]:
    return [per_second(keys, baseline, phases, t) for t in grid]
