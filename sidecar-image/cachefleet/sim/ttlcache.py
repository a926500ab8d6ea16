"""How a cache of TTL'd values answers a key stream, per bucket of keys, in closed form.

Each key is read as a Poisson stream of rate λ = (fleet read rate) × (its share). A value is
stored on a miss and expires ``ttl`` seconds later (hits do not extend it), so a key's life is
a cycle of one miss, ``ttl`` seconds of hits and an exponential wait for the next read:

- steady state: a read misses with probability 1 / (1 + λ·ttl);
- from empty (a new owner, a restarted shard, a fresh gutter): the first read misses, and
  after it the steady ratio applies. The miss rate at time t is approximated by
  λ·(e^(−λt) + (1 − e^(−λt)) / (1 + λ·ttl)), exact at t = 0 and as t → ∞.

Every function sums over all keys; a share of the traffic chosen by key hash (the keys that
moved, a failed shard's keys) has the same popularity mix, so callers scale by that share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cachefleet.sim.popularity import Bucket


def steady_miss_rate(buckets: Sequence[Bucket], rate: float, ttl: float) -> float:
    """Misses per second of the whole keyspace in steady state."""
    total = 0.0
    for bucket in buckets:
        lam = rate * bucket.share
        total += bucket.count * lam / (1.0 + lam * ttl)
    return total


def cold_misses(buckets: Sequence[Bucket], rate: float, ttl: float, elapsed: float) -> float:
    """Misses during the first ``elapsed`` seconds from empty: the integral of the rate above."""
    total = 0.0
    for bucket in buckets:
        lam = rate * bucket.share
        first_reads = 1.0 - math.exp(-lam * elapsed)
        total += bucket.count * (first_reads + (lam * elapsed - first_reads) / (1.0 + lam * ttl))
    return total


def read_share(buckets: Sequence[Bucket], rate: float, elapsed: float) -> float:
    """Share of the traffic on keys read (or written, with a write rate) at least once in
    ``elapsed`` seconds: the warm share during a warm-up, the written share during an outage."""
    total = 0.0
    for bucket in buckets:
        total += bucket.count * bucket.share * (1.0 - math.exp(-rate * bucket.share * elapsed))
    return total


def stale_read_rate(
    buckets: Sequence[Bucket],
    rate: float,
    write_ratio: float,
    ttl: float,
    outage: float,
    since: float,
) -> float:
    """Reads per second, ``since`` seconds after an outage of ``outage`` seconds, that find a
    copy left from before the outage of a key written during it.

    A key was written during the outage with probability 1 − e^(−w·λ·outage). Its old copy is
    still there if it outlived the outage and the time since, taken as an exponential lifetime
    of mean ``ttl``; it stops being read once the key is written again.
    """
    total = 0.0
    for bucket in buckets:
        lam = rate * bucket.share
        written = 1.0 - math.exp(-write_ratio * lam * outage)
        alive = math.exp(-(outage + since) / ttl) * math.exp(-write_ratio * lam * since)
        total += bucket.count * lam * written * alive
    return total


def stale_reads(
    buckets: Sequence[Bucket], rate: float, write_ratio: float, ttl: float, outage: float
) -> float:
    """All such stale reads after the outage: the integral of ``stale_read_rate`` over time."""
    total = 0.0
    for bucket in buckets:
        lam = rate * bucket.share
        written = 1.0 - math.exp(-write_ratio * lam * outage)
        total += (
            bucket.count * lam * written * math.exp(-outage / ttl) / (write_ratio * lam + 1 / ttl)
        )
    return total
