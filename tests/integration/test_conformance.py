"""Every supported command gives, through the sidecar, exactly what a plain Redis gives.

The same command sequence runs step by step against the sidecar (4 shards) and a single plain
redis-server, with redis-py over RESP2 and RESP3 and with both of its parsers (hiredis and the
pure-Python one); then raw bytes are compared, since a client library can hide a wrong shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.connection import _HiredisParser, _RESP2Parser, _RESP3Parser

from tests.integration.conftest import Fleet
from tests.support.resp import RawConnection

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BINARY_KEY = b"\x00\xff\r\nbin key \xe2\x82\xac"
BINARY_VALUE = b"\r\n$5\r\n\x00\x01\x02 value \xff"


def _string_steps() -> list[tuple[Any, ...]]:
    return [
        ("SET", "s1", "v1"),
        ("GET", "s1"),
        ("GET", "missing"),
        ("SET", "s1", "v2", "XX"),
        ("SET", "s1", "v3", "NX"),
        ("SET", "s2", "v", "NX"),
        ("SET", "s2", "w", "XX", "GET"),
        ("SET", "s1", "v4", "GET"),
        ("SET", "s3", "v", "EX", "1000"),
        ("TTL", "s3"),
        ("SET", "s4", "v", "PX", "1000000"),
        ("PTTL", "s4"),
        ("SET", "s4", "v", "EX", "0"),
        ("SETNX", "s1", "x"),
        ("SETNX", "s5", "x"),
        ("SETEX", "s6", "1000", "v"),
        ("TTL", "s6"),
        ("GETSET", "s1", "new"),
        ("GETSET", "fresh-getset", "new"),
        ("GETDEL", "s5"),
        ("GETDEL", "s5"),
        ("GET", "s5"),
        ("GETEX", "s1", "EX", "500"),
        ("TTL", "s1"),
        ("GETEX", "s1", "PERSIST"),
        ("TTL", "s1"),
        ("GETEX", "missing"),
        ("APPEND", "s7", "abc"),
        ("APPEND", "s7", "def"),
        ("STRLEN", "s7"),
        ("STRLEN", "missing"),
        ("GETRANGE", "s7", "1", "3"),
        ("GETRANGE", "s7", "-2", "-1"),
        ("SETRANGE", "s7", "2", "XY"),
        ("GET", "s7"),
        ("SETRANGE", "padded", "5", "x"),
        ("GET", "padded"),
        ("SET", "n", "10"),
        ("INCR", "n"),
        ("DECR", "n"),
        ("INCRBY", "n", "5"),
        ("DECRBY", "n", "3"),
        ("INCR", "counter-new"),
        ("INCRBYFLOAT", "n", "1.5"),
        ("INCRBYFLOAT", "f", "0.1"),
        ("INCRBYFLOAT", "f", "-3.0e2"),
        ("INCR", "s1"),
        ("INCRBY", "n", "not-a-number"),
    ]


def _key_steps() -> list[tuple[Any, ...]]:
    return [
        ("SET", "k1", "a"),
        ("SET", "k2", "b"),
        ("EXPIRE", "k1", "100"),
        ("TTL", "k1"),
        ("PTTL", "k1"),
        ("PERSIST", "k1"),
        ("PERSIST", "k1"),
        ("TTL", "k1"),
        ("TTL", "missing"),
        ("PTTL", "missing"),
        ("EXPIRE", "missing", "10"),
        ("TYPE", "k1"),
        ("TYPE", "missing"),
        ("EXISTS", "k1"),
        ("EXISTS", "k1", "k2", "missing", "k1"),
        ("TOUCH", "k1", "k2", "missing"),
        ("DEL", "k2"),
        ("DEL", "k2"),
        ("UNLINK", "k1", "missing"),
        ("EXISTS", "k1", "k2"),
    ]


def _hash_steps() -> list[tuple[Any, ...]]:
    return [
        ("HSET", "h", "f1", "v1", "f2", "v2", "f3", "3"),
        ("HSET", "h", "f1", "v1b"),
        ("HGET", "h", "f1"),
        ("HGET", "h", "nofield"),
        ("HGETALL", "h"),
        ("HGETALL", "missing"),
        ("HMGET", "h", "f1", "nofield", "f2"),
        ("HDEL", "h", "f2", "nofield"),
        ("HINCRBY", "h", "f3", "5"),
        ("HINCRBY", "h", "f1", "1"),
        ("HKEYS", "h"),
        ("HVALS", "h"),
        ("HLEN", "h"),
        ("HEXISTS", "h", "f1"),
        ("HEXISTS", "h", "nofield"),
        ("TYPE", "h"),
        ("GET", "h"),
        ("HSET", BINARY_KEY + b"-h", BINARY_KEY, BINARY_VALUE),
        ("HGETALL", BINARY_KEY + b"-h"),
    ]


def _list_steps() -> list[tuple[Any, ...]]:
    return [
        ("LPUSH", "l", "a", "b", "c"),
        ("RPUSH", "l", "d", "e", "f"),
        ("LPOP", "l"),
        ("RPOP", "l"),
        ("LPOP", "l", "2"),
        ("LRANGE", "l", "0", "-1"),
        ("LRANGE", "l", "1", "1"),
        ("LLEN", "l"),
        ("LINDEX", "l", "0"),
        ("LINDEX", "l", "99"),
        ("RPOP", "missing"),
        ("LLEN", "missing"),
        ("LPUSH", "s-string", "x"),
    ]


def _set_steps() -> list[tuple[Any, ...]]:
    return [
        ("SADD", "st", "a", "b", "c", "1", "2"),
        ("SADD", "st", "a"),
        ("SMEMBERS", "st"),
        ("SISMEMBER", "st", "a"),
        ("SISMEMBER", "st", "zz"),
        ("SCARD", "st"),
        ("SREM", "st", "a", "zz"),
        ("SMEMBERS", "st"),
        ("SMEMBERS", "missing"),
        ("TYPE", "st"),
    ]


def _zset_steps() -> list[tuple[Any, ...]]:
    return [
        ("ZADD", "z", "1", "a", "2", "b", "3.5", "c"),
        ("ZADD", "z", "0.25", "d"),
        ("ZRANGE", "z", "0", "-1"),
        ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
        ("ZSCORE", "z", "c"),
        ("ZSCORE", "z", "nomember"),
        ("ZINCRBY", "z", "2", "a"),
        ("ZCARD", "z"),
        ("ZREM", "z", "b", "nomember"),
        ("ZRANK", "z", "a"),
        ("ZRANK", "z", "nomember"),
        ("ZRANGE", "z", "0", "-1", "WITHSCORES"),
        ("ZRANGE", "missing", "0", "-1", "WITHSCORES"),
        ("TYPE", "z"),
    ]


def _multi_key_steps() -> list[tuple[Any, ...]]:
    keys = [f"m{i}" for i in range(24)]
    pairs = [part for i, key in enumerate(keys) for part in (key, f"value-{i}")]
    return [
        ("MSET", *pairs),
        ("MGET", *keys),
        ("MGET", "m3", "missing", "m1", "m3", "m22"),
        ("MSET", "{user1}:a", "1", "{user1}:b", "2"),
        ("MGET", "{user1}:b", "{user1}:a", "{user1}:c"),
        ("EXISTS", *keys[:10], "missing"),
        ("TOUCH", *keys[5:15]),
        ("DEL", *keys[:8], "missing"),
        ("UNLINK", *keys[8:16]),
        ("MGET", *keys),
        ("EXISTS", *keys),
    ]


def _binary_steps() -> list[tuple[Any, ...]]:
    return [
        ("SET", BINARY_KEY, BINARY_VALUE),
        ("GET", BINARY_KEY),
        ("STRLEN", BINARY_KEY),
        ("APPEND", BINARY_KEY, b"\x00"),
        ("MSET", BINARY_KEY, b"\xff" * 300, b"", b"empty key"),
        ("MGET", BINARY_KEY, b"", b"\x80"),
        ("SET", "big", b"x" * 100_000),
        ("STRLEN", "big"),
        ("GETRANGE", "big", "99990", "-1"),
        ("EXISTS", BINARY_KEY, b""),
        ("DEL", BINARY_KEY, b""),
    ]


def _more_single_key_steps() -> list[tuple[Any, ...]]:
    return [
        ("SET", "e1", "v", "KEEPTTL"),
        ("PEXPIRE", "e1", "500000"),
        ("SET", "e1", "w", "KEEPTTL"),
        ("TTL", "e1"),
        ("EXPIREAT", "e1", "4102444800"),
        ("PEXPIREAT", "e1", "4102444800000"),
        ("EXPIRETIME", "e1"),
        ("SET", "e2", "v", "EXAT", "4102444800"),
        ("EXPIRETIME", "e2"),
        ("OBJECT", "ENCODING", "e1"),
        ("HSETNX", "h2", "f", "1"),
        ("HSETNX", "h2", "f", "2"),
        ("HSTRLEN", "h2", "f"),
        ("HINCRBYFLOAT", "h2", "f", "0.5"),
        ("RPUSH", "l2", "a", "b", "c", "b"),
        ("LSET", "l2", "0", "z"),
        ("LREM", "l2", "1", "b"),
        ("LINSERT", "l2", "BEFORE", "c", "y"),
        ("LPOS", "l2", "c"),
        ("LTRIM", "l2", "0", "1"),
        ("LRANGE", "l2", "0", "-1"),
        ("SADD", "set2", "1", "2", "3"),
        ("SMISMEMBER", "set2", "1", "9"),
        ("ZADD", "z2", "1", "a", "2", "b", "3", "c"),
        ("ZREVRANGE", "z2", "0", "-1", "WITHSCORES"),
        ("ZRANGEBYSCORE", "z2", "(1", "+inf", "WITHSCORES"),
        ("ZCOUNT", "z2", "-inf", "2"),
        ("ZADD", "z2", "XX", "CH", "INCR", "5", "a"),
        ("ZMSCORE", "z2", "a", "nomember"),
        ("SETBIT", "bits", "7", "1"),
        ("GETBIT", "bits", "7"),
        ("BITCOUNT", "bits"),
        ("BITPOS", "bits", "1"),
        ("PFADD", "hll", "a", "b", "c"),
        ("PFCOUNT", "hll"),
        ("GEOADD", "geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"),
        ("GEODIST", "geo", "Palermo", "Catania", "km"),
        ("GEOPOS", "geo", "Palermo", "nowhere"),
        ("GEOSEARCH", "geo", "FROMMEMBER", "Palermo", "BYRADIUS", "200", "km", "ASC"),
        ("XADD", "stream", "1-1", "f", "v"),
        ("XADD", "stream", "2-1", "f", "w"),
        ("XLEN", "stream"),
        ("XRANGE", "stream", "-", "+"),
        ("DUMP", "e1"),
    ]


def _same_shard_steps() -> list[tuple[Any, ...]]:
    """Commands whose keys must live together, with keys under one hash tag."""
    return [
        ("MSET", "{t}a", "1", "{t}b", "2"),
        ("RENAME", "{t}a", "{t}c"),
        ("RENAMENX", "{t}c", "{t}b"),
        ("COPY", "{t}c", "{t}d"),
        ("MGET", "{t}a", "{t}b", "{t}c", "{t}d"),
        ("MSETNX", "{t}x", "1", "{t}y", "2"),
        ("MSETNX", "{t}x", "1", "{t}z", "2"),
        ("SADD", "{t}s1", "a", "b", "c"),
        ("SADD", "{t}s2", "b", "c", "d"),
        ("SINTERCARD", "2", "{t}s1", "{t}s2"),
        ("SINTERSTORE", "{t}s3", "{t}s1", "{t}s2"),
        ("SCARD", "{t}s3"),
        ("ZADD", "{t}z1", "1", "a", "2", "b"),
        ("ZADD", "{t}z2", "3", "b"),
        ("ZUNIONSTORE", "{t}z3", "2", "{t}z1", "{t}z2"),
        ("ZRANGE", "{t}z3", "0", "-1", "WITHSCORES"),
        ("RPUSH", "{t}l1", "a", "b"),
        ("LMOVE", "{t}l1", "{t}l2", "LEFT", "RIGHT"),
        ("RPOPLPUSH", "{t}l1", "{t}l2"),
        ("LRANGE", "{t}l2", "0", "-1"),
        ("EVAL", "return redis.call('GET', KEYS[1])", "1", "{t}b"),
    ]


STEP_GROUPS: dict[str, Callable[[], list[tuple[Any, ...]]]] = {
    "strings": _string_steps,
    "keys": _key_steps,
    "hashes": _hash_steps,
    "lists": _list_steps,
    "sets": _set_steps,
    "sorted-sets": _zset_steps,
    "multi-key": _multi_key_steps,
    "binary": _binary_steps,
    "more-single-key": _more_single_key_steps,
    "same-shard": _same_shard_steps,
}

# Client variants: redis-py 8's default is RESP3 with hiredis when installed.
CLIENTS: dict[str, dict[str, Any]] = {
    "resp3-default": {},
    "resp2-hiredis": {"protocol": 2, "parser_class": _HiredisParser},
    "resp3-hiredis": {"protocol": 3, "parser_class": _HiredisParser},
    "resp2-python": {"protocol": 2, "parser_class": _RESP2Parser},
    "resp3-python": {"protocol": 3, "parser_class": _RESP3Parser},
}


def _client(port: int, options: dict[str, Any]) -> redis.Redis:
    options = dict(options)
    parser = options.pop("parser_class", None)
    if parser is None:
        return redis.Redis(host="127.0.0.1", port=port, single_connection_client=True, **options)
    pool = redis.ConnectionPool(host="127.0.0.1", port=port, parser_class=parser, **options)
    client = redis.Redis(connection_pool=pool, single_connection_client=True)
    # The parser is chosen per connection: make sure the one asked for is really in use.
    assert type(client.connection._parser) is parser  # type: ignore[union-attr]
    return client


@pytest.fixture(params=list(CLIENTS))
def client_pair(request: pytest.FixtureRequest, clean_fleet: Fleet) -> Iterator[tuple[Any, Any]]:
    options = CLIENTS[request.param]
    proxied = _client(clean_fleet.proxy.port, options)
    direct = _client(clean_fleet.reference.port, options)
    try:
        yield proxied, direct
    finally:
        proxied.close()
        direct.close()


def _outcome(client: redis.Redis, step: tuple[Any, ...]) -> Any:
    try:
        return ("ok", client.execute_command(*step))
    except redis.ResponseError as error:
        return ("error", str(error))


def _same(step: tuple[Any, ...], proxied: Any, direct: Any) -> bool:
    if proxied == direct:
        return True
    # Time passes between the two calls: a remaining TTL may differ by a tick, never its sign.
    name = str(step[0]).upper()
    if name in ("TTL", "PTTL") and proxied[0] == direct[0] == "ok":
        slack = 1 if name == "TTL" else 1000
        p, d = proxied[1], direct[1]
        return p >= 0 and d >= 0 and abs(p - d) <= slack
    return False


@pytest.mark.parametrize("group", list(STEP_GROUPS))
def test_same_replies_as_redis(group: str, client_pair: tuple[Any, Any]) -> None:
    proxied_client, direct_client = client_pair
    mismatches = []
    for step in STEP_GROUPS[group]():
        proxied = _outcome(proxied_client, step)
        direct = _outcome(direct_client, step)
        if not _same(step, proxied, direct):
            mismatches.append(f"{step!r}: sidecar {proxied!r} != redis {direct!r}")
    assert not mismatches, "\n".join(mismatches)


# Raw bytes: each reply's exact encoding, RESP2 and RESP3, compared with Redis's own.
RAW_STEPS: list[tuple[Any, ...]] = [
    ("HSET", "rh", "a", "1", "b", "2"),
    ("HGETALL", "rh"),
    ("HGETALL", "missing"),
    ("HMGET", "rh", "a", "nofield"),
    ("ZADD", "rz", "1", "x", "2.5", "y"),
    ("ZRANGE", "rz", "0", "-1", "WITHSCORES"),
    ("ZSCORE", "rz", "y"),
    ("ZINCRBY", "rz", "1", "x"),
    ("ZSCORE", "rz", "nomember"),
    ("SADD", "rs", "3", "1", "2"),
    ("SMEMBERS", "rs"),
    ("SISMEMBER", "rs", "1"),
    ("GET", "missing"),
    ("SET", "rk", "v"),
    ("GET", "rk"),
    ("SET", "rk", "w", "NX"),
    ("MGET", "rk", "missing", "rh"),
    ("INCRBYFLOAT", "rf", "1.5"),
    ("EXISTS", "rk", "rk", "missing"),
    ("TYPE", "rz"),
    ("GET", "rh"),
    ("LPOP", "missing"),
    ("LPUSH", "rl", "a", "b"),
    ("LRANGE", "rl", "0", "-1"),
    ("LPOP", "rl", "5"),
    ("TTL", "rk"),
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_raw_replies_are_byte_identical(protocol: int, clean_fleet: Fleet) -> None:
    with (
        RawConnection(clean_fleet.proxy.port) as proxied,
        RawConnection(clean_fleet.reference.port) as direct,
    ):
        if protocol == 3:
            for connection in (proxied, direct):
                hello = connection.call("HELLO", "3")
                assert hello.startswith(b"%"), f"HELLO 3 must answer a map, got {hello[:40]!r}"
        mismatches = []
        for step in RAW_STEPS:
            got, want = proxied.call(*step), direct.call(*step)
            if got != want:
                mismatches.append(f"{step!r}: sidecar {got!r} != redis {want!r}")
        assert not mismatches, "\n".join(mismatches)


def test_each_connection_keeps_its_protocol(clean_fleet: Fleet) -> None:
    """A RESP2 and a RESP3 connection interleaved: each gets its own reply shapes."""
    with (
        RawConnection(clean_fleet.proxy.port) as resp2,
        RawConnection(clean_fleet.proxy.port) as resp3,
    ):
        assert resp3.call("HELLO", "3").startswith(b"%")
        assert resp2.call("HSET", "ph", "f", "v") == b":1\r\n"
        for _ in range(3):
            assert resp3.call("HGETALL", "ph") == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
            assert resp2.call("HGETALL", "ph") == b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
            assert resp3.call("GET", "nothing") == b"_\r\n"
            assert resp2.call("GET", "nothing") == b"$-1\r\n"
        assert resp3.call("HELLO", "2").startswith(b"*")
        assert resp3.call("HGETALL", "ph") == b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n"


def test_arity_and_unknown_command_errors_keep_the_connection(clean_fleet: Fleet) -> None:
    with RawConnection(clean_fleet.proxy.port) as connection:
        for step, words in [
            (("GET",), (b"wrong number of arguments", b"get")),
            (("SET", "k"), (b"wrong number of arguments", b"set")),
            (("HSET", "h", "f"), (b"wrong number of arguments", b"hset")),
            (("MSET", "a", "1", "b"), (b"wrong number of arguments", b"mset")),
            (("NOSUCHCOMMAND", "x"), (b"unknown command", b"nosuchcommand")),
        ]:
            reply = connection.call(*step)
            assert reply.startswith(b"-ERR"), f"{step!r} -> {reply!r}"
            for word in words:
                assert word in reply.lower(), f"{step!r} -> {reply!r} lacks {word!r}"
        assert connection.call("SET", "after", "1") == b"+OK\r\n"
        assert connection.call("GET", "after") == b"$1\r\n1\r\n"
