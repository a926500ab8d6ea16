"""A thousand client connections share the sidecar's small pool: each shard sees at most the pool
size of connections from it (per protocol version in use)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest
from cachefleet.sidecar.control import CLIENT_NAME

from tests.support import RedisServer, Sidecar, start_redis_servers, start_sidecar
from tests.support.resp import encode, split_replies

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CLIENTS = 1000
DEFAULT_POOL_SIZE = 1
CHECKER = "cachefleet-checker"


@pytest.fixture(params=[None, 2], ids=["default-pool", "pool-size-2"])
def pooled(request: pytest.FixtureRequest) -> Iterator[tuple[list[RedisServer], Sidecar, int]]:
    pool_size: int | None = request.param
    with start_redis_servers(4) as shards:
        addresses = [shard.address for shard in shards]
        with start_sidecar(addresses, pool_size=pool_size) as sidecar:
            yield shards, sidecar, pool_size or DEFAULT_POOL_SIZE


async def _read_replies(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    buffer = b""
    replies: list[bytes] = []
    while len(replies) < count:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(replies)} replies")
        more, buffer = split_replies(buffer + chunk)
        replies += more
    return replies


async def _open_and_use(
    port: int, number: int, hello3: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = encode("HELLO", "3") if hello3 else b""
    request += encode("PING") + encode("SET", f"c:{number}", number) + encode("GET", f"c:{number}")
    writer.write(request)
    replies = await _read_replies(reader, 4 if hello3 else 3)
    assert replies[-3] == b"+PONG\r\n", replies
    value = str(number).encode()
    assert replies[-1] == b"$%d\r\n%s\r\n" % (len(value), value), replies
    return reader, writer


def _sidecar_connections(shard: RedisServer) -> Counter[str]:
    """The sidecar's pooled connections on a shard, counted by their RESP version: not our own
    checker, not the sidecar's health probe connection (named, and counted as "control")."""
    with shard.client(client_name=CHECKER) as client:
        entries = client.client_list()
    return Counter(
        "control" if e.get("name") == CLIENT_NAME else e.get("resp", "2")
        for e in entries
        if e.get("name") != CHECKER
    )


async def _thousand_clients(port: int, shards: list[RedisServer]) -> list[Counter[str]]:
    connections = []
    try:
        for start in range(0, CLIENTS, 100):
            batch = [_open_and_use(port, n, hello3=n % 2 == 1) for n in range(start, start + 100)]
            connections += await asyncio.gather(*batch)
        # All thousand still open: now count what the shards see.
        return [await asyncio.to_thread(_sidecar_connections, shard) for shard in shards]
    finally:
        for _, writer in connections:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in connections), return_exceptions=True)


def test_thousand_clients_use_at_most_the_pool(
    pooled: tuple[list[RedisServer], Sidecar, int],
) -> None:
    shards, sidecar, pool_size = pooled
    counts = asyncio.run(_thousand_clients(sidecar.port, shards))
    for shard, count in zip(shards, counts, strict=True):
        assert count.pop("control", 0) == 1, f"{shard.address}: one health probe connection"
        assert sum(count.values()) >= 1, f"{shard.address}: no connection from the sidecar"
        for protocol, connections in count.items():
            assert connections <= pool_size, (
                f"{shard.address}: {connections} RESP{protocol} connections, pool size {pool_size}"
            )
    assert sidecar.alive()
    # Every key went through and sits on some shard.
    total = 0
    for shard in shards:
        total += shard.app_keys()
    assert total == CLIENTS
