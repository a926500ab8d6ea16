"""Properties of the ring that must hold for any input, checked with hypothesis."""

import hashlib
import json
import subprocess
import sys

from cachefleet.ring import (
    RingAssignment,
    Shard,
    hash_tag,
    movement,
    plan_change,
    planned_ring,
)
from cachefleet.ring.shards import fair_shares
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.:", min_size=1, max_size=12)
weights = st.sampled_from([0.5, 1.0, 1.0, 1.0, 2.0, 3.0, 7.5])
shard_lists = st.lists(st.tuples(names, weights), min_size=1, max_size=12, unique_by=lambda t: t[0])


def digest(shard_pairs: list[tuple[str, float]], tokens: int) -> str:
    ring = planned_ring([Shard(n, w) for n, w in shard_pairs], tokens)
    return hashlib.sha256(RingAssignment.from_ring(ring).model_dump_json().encode()).hexdigest()


CHILD = """
import hashlib, json, sys
from cachefleet.ring import RingAssignment, Shard, planned_ring
spec = json.loads(sys.argv[1])
ring = planned_ring([Shard(n, w) for n, w in spec["shards"]], spec["tokens"])
print(hashlib.sha256(RingAssignment.from_ring(ring).model_dump_json().encode()).hexdigest())
"""


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shard_lists, st.sampled_from([1, 16, 160]))
def test_same_input_gives_the_same_ring_in_another_process(
    pairs: list[tuple[str, float]], tokens: int
) -> None:
    # A fresh interpreter has another hash seed: nothing may depend on set or dict order.
    spec = json.dumps({"shards": pairs, "tokens": tokens})
    child = subprocess.run(
        [sys.executable, "-c", CHILD, spec],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "random"},
    )
    assert child.stdout.strip() == digest(pairs, tokens)


@settings(max_examples=60, deadline=None)
@given(shard_lists, st.data())
def test_a_change_moves_keys_only_between_the_shards_it_concerns(
    pairs: list[tuple[str, float]], data: st.DataObject
) -> None:
    before = planned_ring([Shard(n, w) for n, w in pairs], 32)
    after_pairs = data.draw(shard_lists)
    after = plan_change(before, [Shard(n, w) for n, w in after_pairs], 32)
    fair_before, fair_after = fair_shares(before.shards), fair_shares(after.shards)
    losers = {n for n in fair_before if fair_after.get(n, 0.0) < fair_before[n]}
    gainers = {n for n in fair_after if fair_after[n] > fair_before.get(n, 0.0)}
    for source, target in movement(before, after).by_pair:
        assert source in losers, (source, target)
        assert target in gainers, (source, target)


@settings(max_examples=60, deadline=None)
@given(shard_lists)
def test_weights_are_honoured_within_the_spread_bound(pairs: list[tuple[str, float]]) -> None:
    ring = planned_ring([Shard(n, w) for n, w in pairs], 16)
    assert ring.max_deviation() <= 0.01


@settings(max_examples=200, deadline=None)
@given(
    tag=st.binary(min_size=1, max_size=12).filter(lambda b: b"}" not in b),
    prefixes=st.lists(
        st.binary(max_size=8).filter(lambda b: b"{" not in b), min_size=2, max_size=5
    ),
    suffix=st.binary(max_size=8),
)
def test_keys_sharing_a_hash_tag_land_together(
    tag: bytes, prefixes: list[bytes], suffix: bytes
) -> None:
    ring = planned_ring([Shard(f"s{i}") for i in range(7)], 16)
    keys = [prefix + b"{" + tag + b"}" + suffix for prefix in prefixes]
    assert all(hash_tag(key) == tag for key in keys)
    assert len({ring.shard_for(key) for key in keys}) == 1
