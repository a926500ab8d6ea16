import random

import pytest
from cachefleet.ring import (
    Ring,
    Shard,
    classic_ring,
    ideal_moved_fraction,
    movement,
    plan_change,
    planned_ring,
)

SPREAD_BOUND = 0.01


def shards(count: int, start: int = 0) -> list[Shard]:
    return [Shard(f"shard-{i}") for i in range(start, start + count)]


@pytest.mark.parametrize("count", [1, 2, 4, 10, 100])
def test_fresh_planned_ring_is_within_one_percent(count: int) -> None:
    ring = planned_ring(shards(count))
    assert ring.max_deviation() <= SPREAD_BOUND
    assert ring.spread() <= SPREAD_BOUND


@pytest.mark.parametrize("count", [4, 10, 100])
def test_adding_a_shard_moves_only_its_fair_share_to_it(count: int) -> None:
    before = planned_ring(shards(count))
    after = plan_change(before, shards(count + 1))
    moved = movement(before, after)
    ideal = ideal_moved_fraction(before.shards, after.shards)
    assert moved.moved_fraction <= 1.02 * ideal
    assert {target for _, target in moved.by_pair} == {f"shard-{count}"}
    assert after.max_deviation() <= SPREAD_BOUND


@pytest.mark.parametrize("count", [4, 10, 100])
def test_removing_a_shard_moves_only_its_keys(count: int) -> None:
    before = planned_ring(shards(count))
    after = plan_change(before, shards(count - 1))
    moved = movement(before, after)
    ideal = ideal_moved_fraction(before.shards, after.shards)
    assert moved.moved_fraction <= 1.02 * ideal
    assert {source for source, _ in moved.by_pair} == {f"shard-{count - 1}"}
    assert after.max_deviation() <= SPREAD_BOUND


def test_removing_a_middle_shard_keeps_the_other_names() -> None:
    before = planned_ring(shards(5))
    remaining = [s for s in before.shards if s.name != "shard-2"]
    after = plan_change(before, remaining)
    assert after.shard_names == ("shard-0", "shard-1", "shard-3", "shard-4")
    assert {source for source, _ in movement(before, after).by_pair} == {"shard-2"}


def test_reweight_moves_only_between_the_shards_whose_share_changes() -> None:
    before = planned_ring([Shard("a", 2), Shard("b"), Shard("c"), Shard("d")])
    # a halves and e joins with the weight a gave up: b, c and d keep their exact share.
    after = plan_change(before, [Shard("a", 1), Shard("b"), Shard("c"), Shard("d"), Shard("e")])
    moved = movement(before, after)
    assert set(moved.by_pair) == {("a", "e")}
    assert moved.moved_fraction == pytest.approx(0.2, abs=1e-6)
    for name in "bcd":
        assert after.owned_units()[name] == before.owned_units()[name]


def test_twenty_random_changes_stay_within_one_percent_and_move_little() -> None:
    rng = random.Random(2024)
    ring = planned_ring(shards(10))
    next_name = 10
    for _ in range(20):
        current = list(ring.shards)
        action = rng.choice(["add", "remove", "reweight"])
        if action == "add" or len(current) < 3:
            current.append(Shard(f"shard-{next_name}", rng.choice([0.5, 1, 2])))
            next_name += 1
        elif action == "remove":
            current.pop(rng.randrange(len(current)))
        else:
            i = rng.randrange(len(current))
            current[i] = Shard(current[i].name, rng.choice([0.5, 1, 1.5, 3]))
        after = plan_change(ring, current)
        moved = movement(ring, after).moved_fraction
        assert moved <= 1.02 * ideal_moved_fraction(ring.shards, after.shards) + 1e-9
        assert after.max_deviation() <= SPREAD_BOUND
        ring = after


def test_weights_are_honoured() -> None:
    ring = planned_ring([Shard("small", 1), Shard("medium", 2), Shard("large", 4)])
    shares = ring.shares()
    assert shares["small"] == pytest.approx(1 / 7, rel=1e-6)
    assert shares["medium"] == pytest.approx(2 / 7, rel=1e-6)
    assert shares["large"] == pytest.approx(4 / 7, rel=1e-6)


def test_no_change_returns_the_same_ring() -> None:
    ring = planned_ring(shards(4))
    assert plan_change(ring, shards(4)) is ring


def test_scaling_all_weights_moves_nothing_but_records_the_new_weights() -> None:
    ring = planned_ring(shards(4))
    doubled = [Shard(s.name, 2.0) for s in ring.shards]
    after = plan_change(ring, doubled)
    assert movement(ring, after).moved_units == 0
    assert after.shards == tuple(doubled)


def test_reweighting_a_lone_shard_records_its_weight() -> None:
    ring = planned_ring(shards(1))
    after = plan_change(ring, [Shard("shard-0", 2.0)])
    assert after.shards == (Shard("shard-0", 2.0),)
    assert after.tokens == ring.tokens


def test_planned_change_from_a_classic_ring_balances_it() -> None:
    ring: Ring = classic_ring(shards(8))
    assert ring.max_deviation() > SPREAD_BOUND
    after = plan_change(ring, shards(9))
    assert after.max_deviation() <= SPREAD_BOUND


def test_token_count_grows_modestly_per_change() -> None:
    ring = planned_ring(shards(100))
    after = plan_change(ring, shards(101))
    # The new shard gets about its fair number of tokens, not one per donor per split.
    assert len(after.tokens) - len(ring.tokens) <= 2 * 160 + 100
