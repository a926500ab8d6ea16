"""Auth, limits and failures: each one costs only the client or the shard concerned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aredis
from cachefleet.config import AuthConfig, LimitsConfig, PoolConfig
from cachefleet.sidecar import Sidecar
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError

from .conftest import Shard_, make_config, start_shard, start_sidecar
from .test_proxy import raw_exchange

pytestmark = pytest.mark.integration


@pytest.fixture
async def protected(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, Shard_]]:
    shard = start_shard(password="s3cret")
    secret = tmp_path / "shard-password"
    secret.write_text("s3cret\n")
    client_secret = tmp_path / "client-password"
    client_secret.write_text("letmein")
    auth = AuthConfig(shard_password_file=str(secret), client_password_file=str(client_secret))
    try:
        app = await start_sidecar(lambda: make_config([shard.address], auth=auth))
        try:
            yield app, shard
        finally:
            await app.stop()
    finally:
        shard.stop()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_sidecar_authenticates_to_shards_and_clients_to_it(
    protected: tuple[Sidecar, Shard_], protocol: int
) -> None:
    app, _ = protected
    good = aredis.Redis(port=app.listen_port, password="letmein", protocol=protocol)
    no_retry = Retry(NoBackoff(), 0)  # redis-py retries a failed AUTH with backoff otherwise
    bad = aredis.Redis(port=app.listen_port, password="wrong", protocol=protocol, retry=no_retry)
    anonymous = aredis.Redis(port=app.listen_port, protocol=2, retry=no_retry)
    try:
        assert await good.set("a", "1")
        assert await good.hset("h", "f", "v") == 1
        assert await good.hgetall("h") == {b"f": b"v"}
        with pytest.raises(AuthenticationError):
            await bad.get("a")
        with pytest.raises(AuthenticationError, match="Authentication required"):
            await anonymous.get("a")
    finally:
        for c in (good, bad, anonymous):
            await c.aclose()


async def test_silent_shard_times_out_and_others_keep_going(shards: list[Shard_]) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    silent_address = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    addresses = [shards[0].address, silent_address]
    app = await start_sidecar(
        lambda: make_config(addresses, pool=PoolConfig(request_timeout_ms=300))
    )
    proxy = aredis.Redis(port=app.listen_port, protocol=2)
    ring = app.config.ring.to_ring()
    stuck = next(f"t{i}" for i in range(500) if ring.shard_for(f"t{i}".encode()) == silent_address)
    fine = next(f"t{i}" for i in range(500) if ring.shard_for(f"t{i}".encode()) != silent_address)
    try:
        slow = asyncio.create_task(proxy.get(stuck))
        assert await proxy.set(fine, "1")  # not held up behind the silent shard
        with pytest.raises(ResponseError, match=f"shard {silent_address} unavailable: no reply"):
            await asyncio.wait_for(slow, 5)
        assert await proxy.get(fine) == b"1"
    finally:
        await proxy.aclose()
        await app.stop()
        silent.close()


async def test_request_size_cap_closes_only_that_client(shards: list[Shard_]) -> None:
    app = await start_sidecar(
        lambda: make_config(
            [s.address for s in shards], limits=LimitsConfig(max_request_bytes=4096)
        )
    )
    proxy = aredis.Redis(port=app.listen_port)
    try:
        big = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n" + b"x" * 100000 + b"\r\n"
        reply = await raw_exchange(app.listen_port, big, 10_000, timeout=2)
        assert reply.startswith(b"-ERR Protocol error")
        small = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n" + b"x" * 100 + b"\r\n"
        assert await raw_exchange(app.listen_port, small, 5) == b"+OK\r\n"
        assert await proxy.get("k") == b"x" * 100
    finally:
        await proxy.aclose()
        await app.stop()


async def test_client_leaving_with_requests_in_flight_disturbs_nobody(sidecar: Sidecar) -> None:
    proxy = aredis.Redis(port=sidecar.listen_port)
    try:
        await proxy.set("stay", "mine")
        for _ in range(20):
            _, writer = await asyncio.open_connection("127.0.0.1", sidecar.listen_port)
            writer.write(b"*2\r\n$3\r\nGET\r\n$4\r\nstay\r\n" * 500)
            writer.close()  # leaves before reading any reply
            values = await asyncio.gather(*(proxy.get("stay") for _ in range(20)))
            assert values == [b"mine"] * 20
    finally:
        await proxy.aclose()


async def test_clients_beyond_max_clients_are_told_and_closed(shards: list[Shard_]) -> None:
    app = await start_sidecar(
        lambda: make_config([shards[0].address], limits=LimitsConfig(max_clients=2))
    )
    try:
        held = [await asyncio.open_connection("127.0.0.1", app.listen_port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", app.listen_port)
        reply = await asyncio.wait_for(reader.read(), 5)  # told, then closed: EOF
        writer.close()
        assert reply == b"-ERR max number of clients reached\r\n"
        for reader, writer in held:
            writer.write(b"PING\r\n")
            assert await reader.readexactly(7) == b"+PONG\r\n"
            writer.close()
    finally:
        await app.stop()
