"""The classic ring: ketama-style tokens derived from each shard's name, no state to keep."""

from __future__ import annotations

from collections.abc import Sequence

from cachefleet.ring.errors import RingError
from cachefleet.ring.hashing import token_position
from cachefleet.ring.ring import MAX_TOTAL_TOKENS, Ring
from cachefleet.ring.shards import Shard, validate_shards

DEFAULT_TOKENS_PER_WEIGHT = 160
MAX_TOKENS_PER_WEIGHT = 10_000


def validate_tokens_per_weight(tokens_per_weight: int) -> int:
    if isinstance(tokens_per_weight, bool) or not isinstance(tokens_per_weight, int):
        raise RingError(
            f"tokens per unit of weight must be a whole number, not {tokens_per_weight!r}"
        )
    if not 1 <= tokens_per_weight <= MAX_TOKENS_PER_WEIGHT:
        raise RingError(
            f"tokens per unit of weight must be between 1 and {MAX_TOKENS_PER_WEIGHT}, "
            f"not {tokens_per_weight}"
        )
    return tokens_per_weight


def token_count(weight: float, tokens_per_weight: int) -> int:
    """A shard of weight w gets w × tokens_per_weight tokens (at least one)."""
    return max(1, round(weight * tokens_per_weight))


def classic_ring(
    shards: Sequence[Shard], tokens_per_weight: int = DEFAULT_TOKENS_PER_WEIGHT
) -> Ring:
    shards = validate_shards(shards)
    validate_tokens_per_weight(tokens_per_weight)
    total = sum(token_count(s.weight, tokens_per_weight) for s in shards)
    if total > MAX_TOTAL_TOKENS:
        raise RingError(f"{total} tokens is more than the supported {MAX_TOTAL_TOKENS}")
    return Ring.from_assignment(
        shards,
        (
            (token_position(s.name, i), s.name)
            for s in shards
            for i in range(token_count(s.weight, tokens_per_weight))
        ),
    )
