"""Keys land on the shard the ring names; multi-key commands are split and put back in order."""

from __future__ import annotations

import random

import pytest
import redis

from tests.integration.conftest import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _holders(fleet: Fleet, key: bytes) -> list[str]:
    """Addresses of the shards that hold ``key``, asked of each shard directly."""
    return _holders_of_many(fleet, [key])[0]


def _holders_of_many(fleet: Fleet, keys: list[bytes]) -> list[list[str]]:
    found: list[list[str]] = [[] for _ in keys]
    for shard in fleet.shards:
        with shard.client() as client:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)
            for holders, exists in zip(found, pipe.execute(), strict=True):
                if exists:
                    holders.append(shard.address)
    return found


def _keys(count: int) -> list[bytes]:
    rng = random.Random(4)
    keys = [f"user:{i}".encode() for i in range(count)]
    keys += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))) for _ in range(count)]
    keys += [b"", b"{", b"{}", b"{}x", b"a{b}c", b"{user1}:a", b"{user1}:b", b"{user1}"]
    return list(dict.fromkeys(keys))


def test_each_key_sits_on_the_shard_the_ring_names(clean_fleet: Fleet) -> None:
    ring = clean_fleet.ring()
    keys = _keys(150)
    with redis.Redis(port=clean_fleet.proxy.port, protocol=2) as client:
        for key in keys:
            client.set(key, b"v:" + key)
    wrong = []
    used = set()
    for key, holders in zip(keys, _holders_of_many(clean_fleet, keys), strict=True):
        expected = ring.shard_for(key)
        used.add(expected)
        if holders != [expected]:
            wrong.append(f"{key!r}: on {holders}, ring says {expected}")
    assert not wrong, f"{len(wrong)} of {len(keys)} keys misplaced:\n" + "\n".join(wrong[:20])
    assert used == set(clean_fleet.addresses), "the test keys should cover every shard"


def test_hash_tags_keep_keys_together(clean_fleet: Fleet) -> None:
    with redis.Redis(port=clean_fleet.proxy.port) as client:
        for tag in range(20):
            client.mset({f"{{user{tag}}}:a": "1", f"{{user{tag}}}:b": "2", f"{{user{tag}}}": "3"})
    for tag in range(20):
        homes = {
            address
            for suffix in (":a", ":b", "")
            for address in _holders(clean_fleet, f"{{user{tag}}}{suffix}".encode())
        }
        assert len(homes) == 1, f"{{user{tag}}} keys spread over {homes}"
    expected = clean_fleet.ring().shard_for(b"{user1}:a")
    assert _holders(clean_fleet, b"{user1}:b") == [expected]


def test_multi_key_commands_split_and_reassemble_in_order(clean_fleet: Fleet) -> None:
    ring = clean_fleet.ring()
    keys = [f"mk:{i}" for i in range(60)]
    values = {key: f"value of {key}" for key in keys}
    with redis.Redis(port=clean_fleet.proxy.port, protocol=2, decode_responses=True) as client:
        assert client.mset(values) is True
        # Each key was written to its own shard, not all to one.
        for key in keys[:12]:
            assert _holders(clean_fleet, key.encode()) == [ring.shard_for(key.encode())]
        rng = random.Random(7)
        for _ in range(10):
            asked = [*rng.sample(keys, 25), "nope:1", "nope:2"]
            rng.shuffle(asked)
            asked.append(asked[0])  # a repeated key answers twice
            assert client.mget(asked) == [values.get(key) for key in asked]
        pipe = client.pipeline(transaction=False)
        batches = [rng.sample(keys, 10) for _ in range(20)]
        for batch in batches:
            pipe.mget(batch)
        assert pipe.execute() == [[values[key] for key in batch] for batch in batches]

        assert client.exists(*keys[:30], "nope", keys[0]) == 31
        assert client.touch(*keys[10:40], "nope") == 30
        assert client.delete(*keys[:20], "nope", keys[0]) == 20
        assert client.unlink(*keys[15:35]) == 15
        assert client.exists(*keys) == 25
        assert client.mget(keys[:40]) == [None] * 35 + [values[k] for k in keys[35:40]]
    remaining = sum(shard.app_keys() for shard in clean_fleet.shards)
    assert remaining == 25


@pytest.mark.parametrize("protocol", [2, 3])
def test_multi_key_errors_and_types(protocol: int, clean_fleet: Fleet) -> None:
    """A wrong-type key inside MGET answers nil like Redis; replies keep the protocol's shape."""
    with (
        redis.Redis(port=clean_fleet.proxy.port, protocol=protocol) as proxied,
        redis.Redis(port=clean_fleet.reference.port, protocol=protocol) as direct,
    ):
        for client in (proxied, direct):
            client.hset("a-hash", "f", "v")
            client.set("str1", "1")
        keys = ["str1", "a-hash", "none", "str1"]
        assert proxied.mget(keys) == direct.mget(keys)
        assert proxied.exists("a-hash", "str1", "none") == 2
