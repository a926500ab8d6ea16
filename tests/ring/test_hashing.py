"""Fixed vectors for the key hash and classic token positions.

These numbers ARE the wire contract: if one changes, running fleets send keys to other shards.
Never update them to make a test pass; bump HASH_CONTRACT and plan a migration instead.
"""

import pytest
from cachefleet.ring import HASH_CONTRACT, Shard, classic_ring, hash_tag, key_hash
from cachefleet.ring.hashing import token_position


def test_contract_name_is_pinned() -> None:
    assert HASH_CONTRACT == "murmur3_x86_32-seed0-unsigned/redis-hash-tags"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"", 0),
        (b"hello", 0x248BFA47),  # the published MurmurHash3_x86_32("hello", seed 0)
        (b"user:1000", 963485340),
        (b"\x00\xff\x10binary", 4160795291),
        ("café".encode(), 605818632),
        (b"foo{}{bar}", 892750999),  # empty first tag: the whole key hashes
        (b"{}x", 790113994),
    ],
)
def test_key_hash_vectors(key: bytes, expected: int) -> None:
    assert key_hash(key) == expected


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        (b"{user1000}.following", b"user1000"),
        (b"{user1000}.followers", b"user1000"),
        (b"foo{bar}{zap}", b"bar"),  # only the first tag counts
        (b"foo{{bar}}zap", b"{bar"),  # from the first { to the first } after it
        (b"foo{}{bar}", b"foo{}{bar}"),  # empty tag: whole key
        (b"foo{bar", b"foo{bar"),  # unclosed: whole key
        (b"foo}bar{", b"foo}bar{"),  # } before {: whole key
        (b"plain", b"plain"),
    ],
)
def test_hash_tag_follows_redis_cluster_rule(key: bytes, tag: bytes) -> None:
    assert hash_tag(key) == tag
    assert key_hash(key) == key_hash(tag)


def test_classic_token_positions_are_pinned() -> None:
    assert token_position("shard-0", 0) == 2103894189
    assert token_position("shard-0", 159) == 2901732356
    assert token_position("10.0.0.1:6379", 7) == 2438533446


def test_classic_placement_is_pinned() -> None:
    ring = classic_ring([Shard(f"shard-{i}") for i in range(4)])
    keys = [b"user:1000", b"hello", b"a", b"b", b"c"]
    assert [ring.shard_for(k) for k in keys] == [
        "shard-0",
        "shard-3",
        "shard-1",
        "shard-0",
        "shard-3",
    ]
