"""How much of the keyspace changes owner between two rings, and what modulo hashing would do."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cachefleet.ring.hashing import CIRCLE_SIZE
from cachefleet.ring.ring import Ring
from cachefleet.ring.shards import Shard, fair_shares


@dataclass(frozen=True)
class Movement:
    """Exact counts of hash positions that change owner, per (from shard, to shard)."""

    moved_units: int
    by_pair: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def moved_fraction(self) -> float:
        return self.moved_units / CIRCLE_SIZE

    def pair_fractions(self) -> dict[tuple[str, str], float]:
        return {pair: units / CIRCLE_SIZE for pair, units in sorted(self.by_pair.items())}


def movement(before: Ring, after: Ring) -> Movement:
    """Sweep the union of both rings' tokens: between two boundaries both owners are constant."""
    boundaries = sorted(set(before.tokens) | set(after.tokens))
    before_owner = _owner_at(before)
    after_owner = _owner_at(after)
    by_pair: dict[tuple[str, str], int] = {}
    moved = 0
    previous = boundaries[-1] - CIRCLE_SIZE
    for boundary in boundaries:
        source, target = before_owner(boundary), after_owner(boundary)
        if source != target:
            length = boundary - previous
            moved += length
            by_pair[(source, target)] = by_pair.get((source, target), 0) + length
        previous = boundary
    return Movement(moved, by_pair)


def _owner_at(ring: Ring) -> Callable[[int], str]:
    tokens = ring.tokens
    owners = [*ring.owners, ring.owners[0]]
    names = ring.shard_names

    def owner(position: int) -> str:
        return names[owners[bisect.bisect_left(tokens, position)]]

    return owner


def ideal_moved_fraction(before: Sequence[Shard], after: Sequence[Shard]) -> float:
    """The least any scheme can move: half the total change of the weighted fair shares."""
    fair_before = fair_shares(before)
    fair_after = fair_shares(after)
    names = fair_before.keys() | fair_after.keys()
    return 0.5 * math.fsum(abs(fair_after.get(n, 0.0) - fair_before.get(n, 0.0)) for n in names)


def modulo_moved_fraction(before: Sequence[str], after: Sequence[str]) -> float:
    """Share of keys that change shard under ``hash % N`` (one slot per shard, in list order).

    The hash is uniform, so counting over one period of both moduli is exact (up to the
    ≤ lcm/2**32 bias of 2**32 not being a multiple of the period).
    """
    n, m = len(before), len(after)
    period = math.lcm(n, m)
    moved = sum(1 for h in range(period) if before[h % n] != after[h % m])
    return moved / period
