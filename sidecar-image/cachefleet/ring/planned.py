"""Planned token allocation: exact weighted shares, and only the keys that must move do.

A change (add, remove, reweight) names the shards it concerns: those whose weighted fair share
is different afterwards. Every other shard keeps every arc it owns, to the bit. The concerned
shards' arcs are then redistributed among themselves so each ends on its exact target share:
shards above target (donors) hand arcs to shards below target (receivers). A donor gives from
its largest arcs first, splitting an arc by inserting a receiver's token inside it, as
Cassandra's token allocator splits the largest ranges; so the ring stays even and every key that
moves goes from a shard that loses share to one that gains it.

The circle has 2**32 positions and targets are whole positions, so shares are exact to within
2**-32: the spread is far below 1% by construction, not by luck.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from fractions import Fraction

from cachefleet.ring.classic import (
    DEFAULT_TOKENS_PER_WEIGHT,
    classic_ring,
    validate_tokens_per_weight,
)
from cachefleet.ring.hashing import CIRCLE_SIZE
from cachefleet.ring.ring import Ring
from cachefleet.ring.shards import Shard, validate_shards


def planned_ring(
    shards: Sequence[Shard], tokens_per_weight: int = DEFAULT_TOKENS_PER_WEIGHT
) -> Ring:
    """A fresh planned ring: the classic tokens, then rebalanced to exact shares."""
    start = classic_ring(shards, tokens_per_weight)
    return _rebalance(start, start.shards, set(start.shard_names), tokens_per_weight)


def plan_change(
    current: Ring,
    new_shards: Sequence[Shard],
    tokens_per_weight: int = DEFAULT_TOKENS_PER_WEIGHT,
) -> Ring:
    """The ring after changing ``current`` to exactly ``new_shards`` (names and weights).

    Shards missing from ``new_shards`` are removed, new names are added, changed weights are
    reweighted. ``tokens_per_weight`` sets how finely new ownership is spread over the circle.
    """
    new_shards = validate_shards(new_shards)
    validate_tokens_per_weight(tokens_per_weight)
    before = _fair_fractions(current.shards)
    after = _fair_fractions(new_shards)
    concerned = {
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    }
    if not concerned:
        # No share changes hands, but the weights (all scaled alike) or the order may have:
        # the same tokens, under the new shard list.
        if current.shards == new_shards:
            return current
        return Ring.from_assignment(new_shards, current.assignment())
    return _rebalance(current, new_shards, concerned, tokens_per_weight)


def _fair_fractions(shards: Sequence[Shard]) -> dict[str, Fraction]:
    # Exact rationals, so "this shard's share did not change" is never a rounding accident.
    weights = {s.name: Fraction(s.weight) for s in shards}
    total = sum(weights.values(), Fraction(0))
    return {name: w / total for name, w in weights.items()}


def _targets(total_units: int, weights: dict[str, Fraction]) -> dict[str, int]:
    """Split ``total_units`` by weight into whole units (largest remainder, ties by name)."""
    weight_sum = sum(weights.values(), Fraction(0))
    exact = {name: total_units * w / weight_sum for name, w in weights.items()}
    floors = {name: int(value) for name, value in exact.items()}
    leftover = total_units - sum(floors.values())
    by_remainder = sorted(exact, key=lambda name: (-(exact[name] - floors[name]), name))
    for name in by_remainder[:leftover]:
        floors[name] += 1
    return floors


def _pair_flows(
    donors: list[tuple[str, int]], receivers: list[tuple[str, int]]
) -> list[tuple[str, str, int]]:
    """Match surpluses to deficits in name order: at most donors + receivers − 1 flows."""
    flows: list[tuple[str, str, int]] = []
    d = r = 0
    donor_left = donors[0][1] if donors else 0
    receiver_left = receivers[0][1] if receivers else 0
    while d < len(donors) and r < len(receivers):
        amount = min(donor_left, receiver_left)
        flows.append((donors[d][0], receivers[r][0], amount))
        donor_left -= amount
        receiver_left -= amount
        if donor_left == 0:
            d += 1
            donor_left = donors[d][1] if d < len(donors) else 0
        if receiver_left == 0:
            r += 1
            receiver_left = receivers[r][1] if r < len(receivers) else 0
    return flows


def _rebalance(
    current: Ring, new_shards: Sequence[Shard], concerned: set[str], tokens_per_weight: int
) -> Ring:
    new_shards = validate_shards(new_shards)
    units = current.owned_units()
    new_weights = {s.name: Fraction(s.weight) for s in new_shards}
    pool = sum(units.get(name, 0) for name in concerned)
    targets = _targets(pool, {n: w for n, w in new_weights.items() if n in concerned})
    balance = {name: units.get(name, 0) - targets.get(name, 0) for name in sorted(concerned)}
    donors = [(name, surplus) for name, surplus in balance.items() if surplus > 0]
    receivers = [(name, -surplus) for name, surplus in balance.items() if surplus < 0]

    names = current.shard_names
    owner_at = {
        token: names[owner] for token, owner in zip(current.tokens, current.owners, strict=True)
    }
    # Max-heaps (by length) of each donor's arcs; ties broken by position for determinism.
    donor_arcs: dict[str, list[tuple[int, int, int]]] = {name: [] for name, _ in donors}
    for start, end, owner in current.arcs():
        heap = donor_arcs.get(names[owner])
        if heap is not None:
            heap.append((start - end, end, start))
    for heap in donor_arcs.values():
        heapq.heapify(heap)

    # New ownership is cut into pieces at the ring's token density, so a shard that gains a
    # share s ends up with about s × tokens_per_weight × total weight new arcs, spread around.
    total_weight = sum(new_weights.values(), Fraction(0))
    density = tokens_per_weight * total_weight / CIRCLE_SIZE
    for donor, receiver, amount in _pair_flows(donors, receivers):
        pieces = max(1, round(amount * density))
        _give(donor_arcs[donor], amount, receiver, pieces, owner_at)

    return Ring.from_assignment(new_shards, sorted(owner_at.items()))


def _give(
    heap: list[tuple[int, int, int]],
    amount: int,
    receiver: str,
    pieces: int,
    owner_at: dict[int, str],
) -> None:
    """Move ``amount`` positions from the donor's largest arcs to ``receiver``."""
    remaining = amount
    taken = 0
    while remaining > 0:
        want = -(-remaining // max(1, pieces - taken))
        negative_length, end, start = heapq.heappop(heap)
        length = -negative_length
        if length <= want:
            owner_at[end % CIRCLE_SIZE] = receiver
            remaining -= length
        else:
            cut = start + want
            owner_at[cut % CIRCLE_SIZE] = receiver
            remaining -= want
            heapq.heappush(heap, (cut - end, end, cut))
        taken += 1
