import math
import random

import pytest
from cachefleet.ring import CIRCLE_SIZE, Ring, RingError, Shard, classic_ring, key_hash
from cachefleet.ring.classic import token_count


def test_key_belongs_to_first_token_at_or_after_its_hash() -> None:
    h = key_hash(b"hello")
    shards = [Shard("before"), Shard("at"), Shard("after")]
    assert Ring(shards, [h - 1, h, h + 1], [0, 1, 2]).shard_for(b"hello") == "at"
    assert Ring(shards, [h - 2, h - 1, h + 1], [0, 1, 2]).shard_for(b"hello") == "after"
    # Past the last token the circle wraps to the first one.
    assert Ring(shards, [1, 2, h - 1], [0, 1, 2]).shard_for(b"hello") == "before"
    # b"" hashes to 0, which every first token is at or after.
    assert Ring(shards, [0, 5, 9], [1, 0, 2]).shard_for(b"") == "at"


def test_fast_lookup_agrees_with_plain_lookup() -> None:
    ring = classic_ring([Shard(f"s{i}", weight=1 + i % 3) for i in range(16)])
    fast = ring.lookup_function()
    rng = random.Random(7)
    keys = [rng.randbytes(rng.randrange(0, 40)) for _ in range(5000)]
    keys += [b"{tag}" + k for k in keys[:500]]
    assert [fast(k) for k in keys] == [ring.shard_index(k) for k in keys]
    assert ring.shard_indices(keys) == [ring.shard_index(k) for k in keys]


def test_ownership_sums_to_the_whole_circle() -> None:
    ring = classic_ring([Shard(f"s{i}") for i in range(10)])
    assert sum(ring.owned_units().values()) == CIRCLE_SIZE
    assert math.isclose(sum(ring.shares().values()), 1.0)


def test_single_token_owns_everything() -> None:
    ring = Ring([Shard("only")], [12345], [0])
    assert ring.shares() == {"only": 1.0}
    assert ring.shard_for(b"anything") == "only"


def test_same_position_drawn_twice_goes_to_lower_name() -> None:
    ring = Ring.from_assignment([Shard("b"), Shard("a")], [(5, "b"), (5, "a"), (9, "b")])
    assert ring.assignment() == [(5, "a"), (9, "b")]


def test_weight_sets_token_count() -> None:
    ring = classic_ring([Shard("small", 1), Shard("big", 2.5)], tokens_per_weight=100)
    counts = {name: 0 for name in ring.shard_names}
    for _, name in ring.assignment():
        counts[name] += 1
    assert counts == {"small": token_count(1, 100), "big": token_count(2.5, 100)}
    assert ring.shares()["big"] > ring.shares()["small"] * 2


def test_classic_spread_is_about_one_over_root_tokens() -> None:
    ring = classic_ring([Shard(f"shard-{i}") for i in range(100)])
    # 1/sqrt(160) is 7.9%; random placement lands near it, never near zero.
    assert 0.04 < ring.spread() < 0.12


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ([], "empty"),
        ([Shard("a"), Shard("a")], "duplicate shard name 'a'"),
        ([Shard("a", 0)], "greater than zero"),
        ([Shard("a", -1)], "greater than zero"),
        ([Shard("a", math.nan)], "not finite"),
        ([Shard("a", math.inf)], "not finite"),
        ([Shard("")], "1 to 253 characters"),
        ([Shard("has space")], "spaces"),
    ],
)
def test_bad_shards_are_named(shards: list[Shard], message: str) -> None:
    with pytest.raises(RingError, match=message):
        classic_ring(shards)


@pytest.mark.parametrize("tokens", [0, -5, 10_001, 10**9])
def test_absurd_token_counts_are_refused(tokens: int) -> None:
    with pytest.raises(RingError, match="tokens per unit of weight"):
        classic_ring([Shard("a")], tokens_per_weight=tokens)


def test_explicit_rings_are_validated() -> None:
    with pytest.raises(RingError, match="strictly increasing"):
        Ring([Shard("a")], [5, 5], [0, 0])
    with pytest.raises(RingError, match="outside"):
        Ring([Shard("a")], [CIRCLE_SIZE], [0])
    with pytest.raises(RingError, match="owns no token"):
        Ring([Shard("a"), Shard("b")], [5], [0])
    with pytest.raises(RingError, match="unknown shard 'z'"):
        Ring.from_assignment([Shard("a")], [(1, "z")])


def test_key_hash_is_what_the_ring_uses() -> None:
    ring = Ring([Shard("low"), Shard("high")], [CIRCLE_SIZE // 2, CIRCLE_SIZE - 1], [0, 1])
    for key in [b"x", b"y", b"z", b"hello"]:
        expected = "low" if key_hash(key) <= CIRCLE_SIZE // 2 else "high"
        assert ring.shard_for(key) == expected
