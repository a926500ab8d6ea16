"""Key popularity: a Zipf law over the distinct keys, summarised in a few hundred buckets.

A fleet has millions of keys; the model needs sums over keys of functions of each key's request
rate. Keys of similar rank have similar rates, so ranks are grouped: the first ranks one by one
(they carry the most traffic), then ranges growing geometrically. Each bucket stands for
``count`` keys that each get ``share`` of all requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EXACT_HEAD = 32  # ranks 1..32 are their own buckets
GROWTH = 1.2  # each later bucket spans 20% more ranks; totals stay within 0.1% of finer buckets


@dataclass(frozen=True)
class Bucket:
    count: float  # keys in the bucket
    share: float  # share of all requests that each of those keys gets


def _rank_mass(first: int, last: int, s: float) -> float:
    """Σ rank^-s for first..last: exact for one rank, else the midpoint-rule integral."""
    if first == last:
        return math.pow(first, -s)
    low, high = first - 0.5, last + 0.5
    if abs(s - 1.0) < 1e-9:
        return math.log(high / low)
    return (math.pow(high, 1.0 - s) - math.pow(low, 1.0 - s)) / (1.0 - s)


def zipf_buckets(keys: float, s: float) -> list[Bucket]:
    """Buckets whose shares sum to 1 over ``keys`` keys with P(rank r) ∝ r^-s."""
    total_keys = max(1, math.floor(keys))
    ranges: list[tuple[int, int]] = []
    first = 1
    while first <= total_keys:
        last = first if first <= EXACT_HEAD else math.floor(first * GROWTH)
        last = min(max(last, first), total_keys)
        ranges.append((first, last))
        first = last + 1
    masses = [_rank_mass(a, b, s) for a, b in ranges]
    total = sum(masses)  # a plain left-to-right sum, as the page computes it
    return [
        Bucket(float(b - a + 1), mass / total / (b - a + 1))
        for (a, b), mass in zip(ranges, masses, strict=True)
    ]
