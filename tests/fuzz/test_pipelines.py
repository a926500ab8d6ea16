"""Random pipelines of valid commands: the sidecar's raw replies equal a plain Redis's, in order.

Hypothesis builds pipelines from a small grammar over few keys (so commands collide on keys and
MGET/DEL/EXISTS span shards); each runs through the sidecar (4 shards) and against one plain
redis-server, over RESP2 or RESP3, sent in one write or in random pieces.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support import RedisServer, Sidecar, start_redis_servers
from tests.support.resp import RawConnection, encode, split_replies

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KEYS = st.sampled_from([b"a", b"b", b"{t}c", b"{t}d", b"k\x00\xff", b"user:1", b"user:2", b""])
VALUES = st.binary(max_size=40)
NUMBERS = st.integers(-1000, 1000).map(lambda n: str(n).encode())

COMMAND = st.one_of(
    st.tuples(st.just(b"SET"), KEYS, VALUES),
    st.tuples(st.just(b"GET"), KEYS),
    st.builds(lambda keys: (b"MGET", *keys), st.lists(KEYS, min_size=1, max_size=6)),
    st.builds(
        lambda pairs: (b"MSET", *(part for pair in pairs for part in pair)),
        st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=4),
    ),
    st.builds(lambda keys: (b"DEL", *keys), st.lists(KEYS, min_size=1, max_size=4)),
    st.builds(lambda keys: (b"EXISTS", *keys), st.lists(KEYS, min_size=1, max_size=4)),
    st.tuples(st.just(b"INCRBY"), KEYS, NUMBERS),
    st.tuples(st.just(b"APPEND"), KEYS, VALUES),
    st.tuples(st.just(b"HSET"), KEYS, VALUES, VALUES),
    st.tuples(st.just(b"HGETALL"), KEYS),
    st.tuples(st.just(b"RPUSH"), KEYS, VALUES),
    st.tuples(st.just(b"LRANGE"), KEYS, st.just(b"0"), st.just(b"-1")),
    st.tuples(st.just(b"ZADD"), KEYS, NUMBERS, VALUES),
    st.tuples(st.just(b"ZRANGE"), KEYS, st.just(b"0"), st.just(b"-1"), st.just(b"WITHSCORES")),
    st.tuples(st.just(b"TYPE"), KEYS),
    st.tuples(
        st.just(b"PING"),
    ),
)


@pytest.fixture(scope="module")
def reference() -> Iterator[RedisServer]:
    with start_redis_servers(1) as (server,):
        yield server


def _flush(servers: list[RedisServer]) -> None:
    for server in servers:
        with RawConnection(server.port) as connection:
            assert connection.call("FLUSHALL") == b"+OK\r\n"


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    commands=st.lists(COMMAND, min_size=1, max_size=40),
    protocol=st.sampled_from([2, 3]),
    cuts=st.lists(st.integers(1, 2000), max_size=5),
)
def test_random_pipelines_match_redis(
    sidecar: Sidecar,
    shards: list[RedisServer],
    reference: RedisServer,
    commands: list[tuple[bytes, ...]],
    protocol: int,
    cuts: list[int],
) -> None:
    _flush([*shards, reference])
    pipeline = b"".join(encode(*command) for command in commands)
    pieces, start = [], 0
    for cut in sorted({c for c in cuts if c < len(pipeline)}):
        pieces.append(pipeline[start:cut])
        start = cut
    pieces.append(pipeline[start:])
    replies = []
    for port in (sidecar.port, reference.port):
        with RawConnection(port) as connection:
            if protocol == 3:
                assert connection.call("HELLO", "3").startswith(b"%")
            for piece in pieces:
                connection.send(piece)
            replies.append(connection.read_replies(len(commands)))
    through_sidecar, from_redis = replies
    for command, got, want in zip(commands, through_sidecar, from_redis, strict=True):
        assert got == want, f"{command!r}: sidecar {got!r} != redis {want!r}"


def _client_script(number: int, rng: random.Random, length: int) -> list[tuple[bytes, ...]]:
    """Commands on this client's own keys only, so its replies do not depend on the others."""
    keys = [b"c%d:%d" % (number, i) for i in range(6)] + [b"{c%d}x" % number, b"{c%d}y" % number]
    script: list[tuple[bytes, ...]] = []
    for _ in range(length):
        key = rng.choice(keys)
        kind = rng.randrange(6)
        if kind == 0:
            script.append((b"SET", key, rng.randbytes(rng.randint(0, 300))))
        elif kind == 1:
            script.append((b"GET", key))
        elif kind == 2:
            script.append((b"MGET", *rng.choices(keys, k=rng.randint(1, 6))))
        elif kind == 3:
            script.append((b"DEL", *rng.choices(keys, k=rng.randint(1, 3))))
        elif kind == 4:
            script.append((b"APPEND", key, b"+"))
        else:
            script.append((b"EXISTS", *rng.choices(keys, k=rng.randint(1, 4))))
    return script


async def _run_script(port: int, script: list[tuple[bytes, ...]], hello3: bool) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        expected = len(script) + (1 if hello3 else 0)
        payload = (encode("HELLO", "3") if hello3 else b"") + b"".join(
            encode(*command) for command in script
        )
        # Send in uneven pieces while the other clients do the same.
        position = 0
        while position < len(payload):
            step = 1 + (position * 7919) % 3000
            writer.write(payload[position : position + step])
            position += step
            await asyncio.sleep(0)
        buffer, replies = b"", []
        while len(replies) < expected:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, f"closed after {len(replies)} of {expected} replies"
            more, buffer = split_replies(buffer + chunk)
            replies += more
        return replies[1:] if hello3 else replies
    finally:
        writer.close()


def test_concurrent_clients_get_their_own_replies(
    sidecar: Sidecar, shards: list[RedisServer], reference: RedisServer
) -> None:
    """Many clients pipelining at once share the pooled shard connections; each gets exactly
    the replies a plain Redis gives that client's script, in order."""
    _flush([*shards, reference])
    rng = random.Random(11)
    scripts = [_client_script(n, rng, 300) for n in range(12)]
    hello3 = [n % 3 == 0 for n in range(12)]

    async def run_all(port: int) -> list[list[bytes]]:
        return list(
            await asyncio.gather(
                *(_run_script(port, s, h) for s, h in zip(scripts, hello3, strict=True))
            )
        )

    through_sidecar = asyncio.run(run_all(sidecar.port))
    from_redis = asyncio.run(run_all(reference.port))
    for number, (got, want) in enumerate(zip(through_sidecar, from_redis, strict=True)):
        for command, g, w in zip(scripts[number], got, want, strict=True):
            assert g == w, (
                f"client {number}, {command[:3]!r}: sidecar {g[:80]!r} != redis {w[:80]!r}"
            )
