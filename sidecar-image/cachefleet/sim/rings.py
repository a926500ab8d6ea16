"""The ring figures the model needs, computed with the project's own ring code.

Nothing here re-derives a moved fraction: the modulo figure is ``modulo_moved_fraction``, the
consistent-hash figures are ``movement`` between two rings built by ``classic_ring`` (what a
ketama client or twemproxy does) or ``planned_ring`` and ``plan_change`` (what the operator
hands the sidecar). The tables are computed once, when the page is written, for every shard
count its sliders offer, and travel into the page as plain numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cachefleet.ring import (
    Ring,
    Shard,
    classic_ring,
    ideal_moved_fraction,
    modulo_moved_fraction,
    movement,
    plan_change,
    planned_ring,
)

FAILED_SHARD = "shard-0"


def shard_list(count: int) -> list[Shard]:
    return [Shard(f"shard-{i}") for i in range(count)]


@dataclass(frozen=True)
class FailureRing:
    """What losing ``shard-0`` of ``shards`` does under each way of placing keys."""

    shards: int
    modulo_moved: float  # hash % N over the remaining list
    classic_moved: float  # ketama ring without the failed shard's tokens
    classic_failed_share: float  # the failed shard's share of keys before
    classic_busiest_share_before: float
    classic_busiest_share_after: float
    planned_failed_share: float  # the sidecar's planned ring: what the gutter takes


@dataclass(frozen=True)
class ResizeRing:
    """What changing from ``before`` to ``after`` shards moves under each placement."""

    before: int
    after: int
    modulo_moved: float
    classic_moved: float
    planned_moved: float
    ideal_moved: float


def failure_ring(count: int) -> FailureRing:
    shards = shard_list(count)
    survivors = [shard for shard in shards if shard.name != FAILED_SHARD]
    names = [shard.name for shard in shards]
    classic_before = classic_ring(shards)
    classic_after = classic_ring(survivors)
    share_before = classic_before.shares()
    return FailureRing(
        shards=count,
        modulo_moved=modulo_moved_fraction(names, [s.name for s in survivors]),
        classic_moved=movement(classic_before, classic_after).moved_fraction,
        classic_failed_share=share_before[FAILED_SHARD],
        classic_busiest_share_before=max(share_before.values()),
        classic_busiest_share_after=max(classic_after.shares().values()),
        planned_failed_share=planned_ring(shards).shares()[FAILED_SHARD],
    )


def resize_ring(
    before: int, after: int, classic: dict[int, Ring], planned: dict[int, Ring]
) -> ResizeRing:
    names_before = [f"shard-{i}" for i in range(before)]
    names_after = [f"shard-{i}" for i in range(after)]
    return ResizeRing(
        before=before,
        after=after,
        modulo_moved=modulo_moved_fraction(names_before, names_after),
        classic_moved=movement(classic[before], classic[after]).moved_fraction,
        planned_moved=movement(
            planned[before], plan_change(planned[before], shard_list(after))
        ).moved_fraction,
        ideal_moved=ideal_moved_fraction(shard_list(before), shard_list(after)),
    )


@dataclass(frozen=True)
class RingTables:
    failure: dict[int, FailureRing]
    resize: dict[tuple[int, int], ResizeRing]

    def to_json(self) -> dict[str, dict[str, dict[str, float]]]:
        """Plain numbers for the page, keyed ``"N"`` and ``"A>B"``."""
        return {
            "failure": {str(n): vars(row) for n, row in self.failure.items()},
            "resize": {f"{a}>{b}": vars(row) for (a, b), row in self.resize.items()},
        }


def ring_tables(shard_counts: Iterable[int], resize_counts: Iterable[int]) -> RingTables:
    """Failure figures for each of ``shard_counts``; resize figures for every ordered pair of
    ``resize_counts`` (a pair of equal counts moves nothing)."""
    counts = sorted(set(resize_counts))
    classic = {n: classic_ring(shard_list(n)) for n in counts}
    planned = {n: planned_ring(shard_list(n)) for n in counts}
    return RingTables(
        failure={n: failure_ring(n) for n in sorted(set(shard_counts))},
        resize={(a, b): resize_ring(a, b, classic, planned) for a in counts for b in counts},
    )
