"""Shards as the ring sees them: a name and a weight, validated once at the boundary."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from cachefleet.ring.errors import RingError

MAX_SHARDS = 10_000
MAX_WEIGHT = 1_000_000.0
MAX_NAME_LENGTH = 253


@dataclass(frozen=True, slots=True)
class Shard:
    name: str
    weight: float = 1.0


def validate_shards(shards: Iterable[Shard]) -> tuple[Shard, ...]:
    """Return the shards as a tuple, or raise RingError naming the first problem."""
    result = tuple(shards)
    if not result:
        raise RingError("the shard list is empty: a ring needs at least one shard")
    if len(result) > MAX_SHARDS:
        raise RingError(f"{len(result)} shards is more than the supported {MAX_SHARDS}")
    seen: set[str] = set()
    for shard in result:
        name = shard.name
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
            raise RingError(f"shard name {name!r} must be 1 to {MAX_NAME_LENGTH} characters")
        if any(ch.isspace() for ch in name) or not name.isprintable():
            raise RingError(f"shard name {name!r} must not contain spaces or control characters")
        if name in seen:
            raise RingError(f"duplicate shard name {name!r}")
        seen.add(name)
        weight = shard.weight
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise RingError(f"shard {name!r}: weight {weight!r} is not a number")
        if not math.isfinite(weight):
            raise RingError(f"shard {name!r}: weight {weight!r} is not finite")
        if weight <= 0:
            raise RingError(f"shard {name!r}: weight {weight!r} must be greater than zero")
        if weight > MAX_WEIGHT:
            raise RingError(
                f"shard {name!r}: weight {weight!r} is above the maximum {MAX_WEIGHT:g}"
            )
    return result


def fair_shares(shards: Iterable[Shard]) -> dict[str, float]:
    """Each shard's weighted fair share of the keyspace."""
    shards = tuple(shards)
    total = math.fsum(s.weight for s in shards)
    return {s.name: s.weight / total for s in shards}
