import random

import pytest
from cachefleet.ring import Shard, classic_ring, modulo_moved_fraction, movement
from cachefleet.sim.rings import failure_ring, ring_tables


def test_losing_a_node_moves_what_each_placement_moves() -> None:
    row = failure_ring(10)
    # hash % N: dropping the first of ten from the list moves 90% of the keys.
    names = [f"shard-{i}" for i in range(10)]
    assert row.modulo_moved == modulo_moved_fraction(names, names[1:]) == pytest.approx(0.9)
    # A consistent-hash ring moves only the failed node's keys.
    assert row.classic_moved == pytest.approx(row.classic_failed_share, abs=1e-12)
    assert 0.05 < row.classic_failed_share < 0.15
    assert row.classic_busiest_share_after > row.classic_busiest_share_before
    # The planned ring gives every shard exactly its share: what the gutter takes.
    assert row.planned_failed_share == pytest.approx(0.1, abs=1e-9)


def test_the_issue_4_to_5_change_moves_the_readme_figures() -> None:
    row = ring_tables([2], [4, 5]).resize[(4, 5)]
    assert row.modulo_moved == pytest.approx(0.8)
    assert row.planned_moved == pytest.approx(0.2, abs=1e-9)
    assert row.ideal_moved == pytest.approx(0.2)
    assert row.classic_moved == pytest.approx(0.186, abs=0.001)  # README: 18.6%


def test_the_tables_hold_every_pair_and_equal_pairs_move_nothing() -> None:
    tables = ring_tables([2, 3], [1, 2, 3])
    assert set(tables.resize) == {(a, b) for a in (1, 2, 3) for b in (1, 2, 3)}
    for n in (1, 2, 3):
        row = tables.resize[(n, n)]
        assert (row.modulo_moved, row.classic_moved, row.planned_moved) == (0, 0, 0)
    as_json = tables.to_json()
    assert set(as_json["failure"]) == {"2", "3"}
    assert as_json["resize"]["2>3"]["planned_moved"] == tables.resize[(2, 3)].planned_moved


def test_the_failure_figure_is_what_real_keys_do() -> None:
    shards = [Shard(f"shard-{i}") for i in range(8)]
    before, after = classic_ring(shards), classic_ring(shards[1:])
    rng = random.Random(3)
    keys = [rng.randbytes(12) for _ in range(40_000)]
    moved = sum(before.shard_for(k) != after.shard_for(k) for k in keys) / len(keys)
    assert moved == pytest.approx(failure_ring(8).classic_moved, abs=0.01)
    assert failure_ring(8).classic_moved == movement(before, after).moved_fraction
