"""Random pipelines of valid commands: the sidecar's raw replies equal a plain Redis's, in order.

Hypothesis builds pipelines from a small grammar over few keys (so commands collide on keys and
MGET/DEL/EXISTS span shards); each runs through the sidecar (4 shards) and against one plain
redis-server, over RESP2 or RESP3, sent in one write or in random pieces.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support import RedisServer, Sidecar, start_redis_servers
from tests.support.resp import RawConnection, encode

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
