import random

import pytest
from cachefleet.ring import (
    Shard,
    classic_ring,
    ideal_moved_fraction,
    modulo_moved_fraction,
    movement,
)


def test_movement_matches_counting_real_keys() -> None:
    before = classic_ring([Shard(f"s{i}") for i in range(5)])
    after = classic_ring([Shard(f"s{i}") for i in range(6)])
    rng = random.Random(1)
    keys = [rng.randbytes(16) for _ in range(40_000)]
    changed = sum(1 for k in keys if before.shard_for(k) != after.shard_for(k))
    moved = movement(before, after)
    # 40k keys: the sample's standard error is about 0.2 percentage points.
    assert changed / len(keys) == pytest.approx(moved.moved_fraction, abs=0.01)
    assert sum(moved.by_pair.values()) == moved.moved_units


def test_same_ring_moves_nothing() -> None:
    ring = classic_ring([Shard("a"), Shard("b")])
    assert movement(ring, ring).moved_units == 0


def test_classic_add_moves_only_to_the_new_shard() -> None:
    before = classic_ring([Shard(f"s{i}") for i in range(4)])
    after = classic_ring([Shard(f"s{i}") for i in range(5)])
    assert {target for _, target in movement(before, after).by_pair} == {"s4"}


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [(4, 5, 0.8), (5, 4, 0.8), (10, 11, 10 / 11), (2, 4, 0.5), (3, 3, 0.0)],
)
def test_modulo_movement(before: int, after: int, expected: float) -> None:
    names_before = [f"s{i}" for i in range(before)]
    names_after = [f"s{i}" for i in range(after)]
    assert modulo_moved_fraction(names_before, names_after) == pytest.approx(expected)


def test_ideal_movement_is_half_the_change_of_fair_shares() -> None:
    assert ideal_moved_fraction([Shard("a"), Shard("b")], [Shard("a"), Shard("b"), Shard("c")]) == (
        pytest.approx(1 / 3)
    )
    assert ideal_moved_fraction([Shard("a")], [Shard("a", 5)]) == 0
