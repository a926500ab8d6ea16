"""The sidecar in front of 4 real redis-servers: behaviour as clients see it."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import pytest
import redis.asyncio as aredis
from cachefleet.sidecar import Sidecar
from redis.exceptions import ResponseError

from .conftest import Shard_

pytestmark = pytest.mark.integration


def client(app: Sidecar, **kwargs: Any) -> aredis.Redis:
    return aredis.Redis(host="127.0.0.1", port=app.listen_port, **kwargs)


def shard_client(shard: Shard_, **kwargs: Any) -> aredis.Redis:
    return aredis.Redis(host="127.0.0.1", port=shard.port, protocol=2, **kwargs)


async def raw_exchange(port: int, payload: bytes, until: int, timeout: float = 5.0) -> bytes:
    """Send bytes, read until ``until`` bytes or EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        data = b""
        while len(data) < until:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        writer.close()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_commands_match_redis_itself(
    sidecar: Sidecar, shards: list[Shard_], protocol: int
) -> None:
    proxy = client(sidecar, protocol=protocol)
    direct = aredis.Redis(host="127.0.0.1", port=shards[0].port, protocol=protocol)
    try:
        for target, prefix in ((proxy, "p"), (direct, "d")):
            await target.set(f"{prefix}:s", "v")
            await target.hset(f"{prefix}:h", mapping={"a": "1", "b": "2"})
            await target.zadd(f"{prefix}:z", {"x": 1.5, "y": 2})
            await target.rpush(f"{prefix}:l", "1", "2", "3")
            await target.sadd(f"{prefix}:set", "m")
        assert await proxy.get("p:s") == await direct.get("d:s") == b"v"
        assert await proxy.hgetall("p:h") == await direct.hgetall("d:h")
        assert await proxy.zrange("p:z", 0, -1, withscores=True) == await direct.zrange(
            "d:z", 0, -1, withscores=True
        )
        assert await proxy.lrange("p:l", 0, -1) == await direct.lrange("d:l", 0, -1)
        assert await proxy.smembers("p:set") == await direct.smembers("d:set")
        assert await proxy.incr("p:n") == await direct.incr("d:n") == 1
        assert await proxy.get("p:missing") is None
        assert await proxy.ttl("p:s") == await direct.ttl("d:s") == -1
        assert await proxy.ping() is True
        assert await proxy.echo("hi") == b"hi"
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await proxy.get("p:h")
    finally:
        await proxy.aclose()
        await direct.aclose()


async def test_hiredis_parser_and_hello3_map_replies(sidecar: Sidecar) -> None:
    from redis._parsers import _AsyncHiredisParser
    from redis.asyncio.connection import Connection

    pool = aredis.ConnectionPool(
        host="127.0.0.1",
        port=sidecar.listen_port,
        protocol=3,
        parser_class=_AsyncHiredisParser,
        connection_class=Connection,
    )
    proxy = aredis.Redis(connection_pool=pool)
    try:
        await proxy.hset("h", mapping={"f": "v"})
        assert await proxy.hgetall("h") == {b"f": b"v"}
        info = await proxy.info()
        assert info["loading"] == 0
        await proxy.zadd("z", {"m": 2.5})
        assert await proxy.zrange("z", 0, -1, withscores=True) == [[b"m", 2.5]]
        assert await proxy.execute_command("CLIENT", "ID") > 0
    finally:
        await proxy.aclose()


async def test_each_key_is_on_the_shard_the_ring_names(
    sidecar: Sidecar, shards: list[Shard_]
) -> None:
    proxy = client(sidecar)
    by_port = {s.port: shard_client(s) for s in shards}
    ring = sidecar.config.ring.to_ring()
    try:
        keys = [f"key:{i}".encode() for i in range(200)]
        await proxy.mset({k: k for k in keys})
        owners = {ring.shard_for(k) for k in keys}
        assert len(owners) == 4  # the keys really spread
        for key in keys:
            owner = int(ring.shard_for(key).rpartition(":")[2])
            for port, direct in by_port.items():
                assert (await direct.get(key) == key) == (port == owner), (key, port, owner)
        values = await proxy.mget([*keys, b"nope"])
        assert values == [*keys, None]
        assert await proxy.exists(*keys, b"nope") == 200
        assert await proxy.delete(*keys[:150]) == 150
        assert await proxy.exists(*keys) == 50
    finally:
        await proxy.aclose()
        for direct in by_port.values():
            await direct.aclose()


async def test_refused_and_unknown_commands_keep_the_connection(sidecar: Sidecar) -> None:
    proxy = client(sidecar, protocol=2, single_connection_client=True)
    ring = sidecar.config.ring.to_ring()
    apart = next(
        f"k{i}" for i in range(100) if ring.shard_for(f"k{i}".encode()) != ring.shard_for(b"k")
    )
    try:
        for command, expected in (
            (("KEYS", "*"), "KEYS is not supported by cachefleet: it spans every shard"),
            (("MULTI",), "MULTI is not supported by cachefleet: transactions"),
            (("BLPOP", "a", "0"), "BLPOP is not supported by cachefleet: blocking"),
            (("SUBSCRIBE", "c"), "SUBSCRIBE is not supported by cachefleet: pub/sub"),
            (("FLUSHALL",), "FLUSHALL is not supported"),
            (("CLIENT", "KILL", "x"), "CLIENT KILL is not supported"),
            (("NOSUCH", "a", "b"), "unknown command 'NOSUCH', with args beginning with: 'a' 'b'"),
            (("GET",), "wrong number of arguments for 'get' command"),
            (("SELECT", "3"), "SELECT is not supported"),
            (("RENAME", "k", apart), "RENAME is not supported by cachefleet across shards"),
        ):
            with pytest.raises(ResponseError, match=expected):
                await proxy.execute_command(*command)
        await proxy.set("{t}a", "1")
        assert await proxy.execute_command("RENAME", "{t}a", "{t}b")
        assert await proxy.get("{t}b") == b"1"
        assert await proxy.execute_command("SELECT", "0")
        assert await proxy.ping()
    finally:
        await proxy.aclose()


async def test_keys_under_cachefleets_own_prefix_are_refused_and_nothing_reaches_a_shard(
    sidecar: Sidecar, shards: list[Shard_]
) -> None:
    # The gutter's journal, warm-up tombstones and the heartbeats live under "cachefleet:": an
    # app's write there could make a recovering sidecar skip a clean-up and serve stale data.
    own = "cachefleet:gutter:journal:{shard-0}"
    proxy = client(sidecar, protocol=2, single_connection_client=True)
    try:
        for command in (
            ("SET", own, "x"),  # the fast path's command, in C and in Python
            ("GET", "cachefleet:sidecars"),
            ("HSET", "cachefleet:sidecars", "me", "1"),
            ("INCR", "cachefleet:warmup:v2"),
            ("MSET", "a", "1", "cachefleet:tomb:a", "2"),  # split: any of its keys
            ("MGET", "a", "cachefleet:tomb:a"),
            ("DEL", "cachefleet:gutter:seq"),
            ("EVAL", "return 1", "1", "cachefleet:x"),  # keys named by numkeys
        ):
            with pytest.raises(ResponseError, match="starting with 'cachefleet:'"):
                await proxy.execute_command(*command)
        # The connection goes on, and a key that merely contains the prefix is an app's key.
        await proxy.set("app:cachefleet:x", "1")
        assert await proxy.get("app:cachefleet:x") == b"1"
        assert await proxy.get("a") is None  # the refused MSET wrote none of its keys
    finally:
        await proxy.aclose()
    # A pipeline: the refused request answers in its place, its neighbours as usual.
    payload = (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
        b"*2\r\n$3\r\nGET\r\n$13\r\ncachefleet:xy\r\n"
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    )
    data = await raw_exchange(sidecar.listen_port, payload, 200, timeout=1.0)
    first, error, rest = data.split(b"\r\n", 2)
    assert first == b"+OK"
    assert error.startswith(b"-ERR GET of a key starting with 'cachefleet:'")
    assert rest == b"$1\r\nv\r\n"
    assert sidecar.stats.errors["own_key"] == 9  # each refusal counted for /metrics
    # Nothing the refused requests named reached a shard (the sidecars' own heartbeat hash,
    # cachefleet:sidecars, may be there: only its field "me" would be the app's).
    named = [own, "cachefleet:warmup:v2", "cachefleet:tomb:a", "cachefleet:gutter:seq"]
    named += ["cachefleet:x", "cachefleet:xy"]
    for shard in shards:
        direct = shard_client(shard)
        try:
            assert await direct.exists(*named) == 0
            assert await direct.hget("cachefleet:sidecars", "me") is None
        finally:
            await direct.aclose()


async def test_replies_come_back_in_request_order_across_shards(sidecar: Sidecar) -> None:
    count = 400
    payload = b"".join(
        b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(k), k)
        for k in (f"o:{i}".encode() for i in range(count))
    )
    gets = [f"o:{i}".encode() for i in range(count)]
    payload += b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k) for k in gets)
    payload += b"PING\r\n"  # an inline command in the middle of the pipeline
    expected = b"+OK\r\n" * count + b"".join(b"$%d\r\n%s\r\n" % (len(k), k) for k in gets)
    expected += b"+PONG\r\n"
    data = await raw_exchange(sidecar.listen_port, payload, len(expected))
    assert data == expected


async def test_a_client_that_stops_reading_gets_every_byte_in_order_later(
    sidecar: Sidecar, shards: list[Shard_]
) -> None:
    """A reply far larger than the socket takes is written in parts (the C build writes what
    the socket takes and leaves the rest to the transport); the next reply must wait behind it,
    other clients are served meanwhile, and once the client reads, every byte is there."""
    big = bytes(random.Random(3).randbytes(16 << 20))
    for shard in shards:  # whichever shard owns the keys has them
        direct = shard_client(shard)
        await direct.set("stalled:big", big)
        await direct.set("stalled:small", "small")
        await direct.aclose()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", sidecar.listen_port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    other = client(sidecar)
    try:
        writer.write(b"*2\r\n$3\r\nGET\r\n$11\r\nstalled:big\r\n")
        await writer.drain()
        await asyncio.sleep(0.3)  # not reading: the sidecar holds most of the reply
        assert await other.set("stalled:other", "v") is True
        assert await other.get("stalled:other") == b"v"
        writer.write(b"*2\r\n$3\r\nGET\r\n$13\r\nstalled:small\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        expected = b"$%d\r\n%s\r\n$5\r\nsmall\r\n" % (len(big), big)
        data = await asyncio.wait_for(reader.readexactly(len(expected)), 10)
        assert data == expected
    finally:
        writer.close()
        await other.aclose()


async def test_garbage_from_one_client_does_not_disturb_another(sidecar: Sidecar) -> None:
    proxy = client(sidecar)
    try:

        async def steady() -> int:
            done = 0
            for i in range(300):
                await proxy.set(f"g:{i}", i)
                assert await proxy.get(f"g:{i}") == str(i).encode()
                done += 1
            return done

        garbage = [
            b"*2\r\n$3\r\nGET\r\n+foo\r\n",
            b"*1\r\n$-5\r\n",
            b"*x\r\n",
            b"$3\r\nabc\r\n",
            b"*2\r\n$3\r\nGET\r\n$999999999999\r\nab",
            b"\x00\xff\xfe garbage\r\n",
            b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n",  # incomplete, then the client leaves
        ]

        async def noise() -> list[bytes]:
            return [await raw_exchange(sidecar.listen_port, g, 1, timeout=2) for g in garbage]

        done, replies = await asyncio.gather(steady(), noise())
        assert done == 300
        for reply in replies[:5]:
            assert reply.startswith(b"-ERR"), reply
        assert replies[5].startswith(b"-ERR unknown command")
    finally:
        await proxy.aclose()


async def test_thousand_clients_share_the_pool(sidecar: Sidecar, shards: list[Shard_]) -> None:
    connections = []
    try:
        for _ in range(1000):
            connections.append(await asyncio.open_connection("127.0.0.1", sidecar.listen_port))
        for i, (_, writer) in enumerate(connections):
            key = f"c:{i}".encode()
            writer.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\n1\r\n" % (len(key), key))
        for reader, _ in connections:
            assert await asyncio.wait_for(reader.readexactly(5), 10) == b"+OK\r\n"
        for shard in shards:
            direct = shard_client(shard)
            try:
                listing = await direct.execute_command("CLIENT", "LIST")
                # the sidecar's pooled connection(s), its health probe's connection (named)
                # and this CLIENT LIST connection
                assert listing.count(b"name=cachefleet-control ") == 1
                pooled = listing.count(b"cmd=") - 2
                assert pooled <= sidecar.config.pool.connections_per_shard
            finally:
                await direct.aclose()
    finally:
        for _, writer in connections:
            writer.close()


async def test_quit_answers_then_closes(sidecar: Sidecar) -> None:
    data = await raw_exchange(sidecar.listen_port, b"PING\r\nQUIT\r\nPING\r\n", 100, timeout=2)
    assert data == b"+PONG\r\n+OK\r\n"


async def test_hello_negotiation(sidecar: Sidecar) -> None:
    data = await raw_exchange(sidecar.listen_port, b"HELLO 4\r\n", 10, timeout=2)
    assert data == b"-NOPROTO unsupported protocol version\r\n"
    data = await raw_exchange(
        sidecar.listen_port, b"HELLO 3 SETNAME app\r\nCLIENT GETNAME\r\nGET nokey\r\n", 10000
    )
    assert data.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
    assert data.endswith(b"$3\r\napp\r\n_\r\n")  # RESP3 null from a RESP3 backend connection


async def test_a_dead_shard_fails_only_its_keys(sidecar: Sidecar, shards: list[Shard_]) -> None:
    from .conftest import start_shard

    extra = start_shard()
    from .conftest import make_config

    addresses = [s.address for s in shards] + [extra.address]
    config = make_config(addresses)
    config = config.model_copy(update={"listen": sidecar.config.listen})
    sidecar.apply(config)
    proxy = client(sidecar)
    ring = config.ring.to_ring()
    try:
        await proxy.set("warm", 1)
        extra.stop()
        await asyncio.sleep(0.1)
        dead_key = next(
            f"d:{i}" for i in range(1000) if ring.shard_for(f"d:{i}".encode()) == extra.address
        )
        live_key = next(
            f"d:{i}" for i in range(1000) if ring.shard_for(f"d:{i}".encode()) != extra.address
        )
        with pytest.raises(Exception, match=f"shard {extra.address} unavailable"):
            await proxy.get(dead_key)
        assert await proxy.set(live_key, "ok")
        assert await proxy.get(live_key) == b"ok"
    finally:
        await proxy.aclose()
        extra.stop()


async def test_reload_under_load_fails_nothing(sidecar: Sidecar, shards: list[Shard_]) -> None:
    from .conftest import make_config

    proxy = client(sidecar)
    stop = asyncio.Event()
    failures: list[BaseException] = []
    done = 0

    async def load() -> None:
        nonlocal done
        i = 0
        while not stop.is_set():
            try:
                await proxy.set(f"r:{i % 500}", "v")
                await proxy.mget([f"r:{(i + j) % 500}" for j in range(5)])
                done += 1
            except Exception as error:
                failures.append(error)
            i += 1

    workers = [asyncio.create_task(load()) for _ in range(8)]
    try:
        await asyncio.sleep(0.3)
        three = make_config([s.address for s in shards[:3]])
        four = make_config([s.address for s in shards])
        for config in (three, four, three, four):
            sidecar.apply(config.model_copy(update={"listen": sidecar.config.listen}))
            await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*workers)
    finally:
        stop.set()
        await proxy.aclose()
    assert failures == []
    assert done > 50


async def test_protocol_switches_between_separate_reads_reach_later_requests(
    sidecar: Sidecar,
) -> None:
    """Requests in separate reads take the C fast path; HELLO between them must still apply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.listen_port)
    get = b"*2\r\n$3\r\nGET\r\n$5\r\nnokey\r\n"
    expected = [
        (get, b"$-1\r\n"),
        (get, b"$-1\r\n"),
        (b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n", None),
        (get, b"_\r\n"),
        (get, b"_\r\n"),
        (b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n", None),
        (get, b"$-1\r\n"),
    ]
    try:
        for request, reply in expected:
            writer.write(request)
            await writer.drain()
            if reply is None:  # HELLO's map: read until the next request's reply is all left
                data = await asyncio.wait_for(reader.readuntil(b"modules\r\n"), 5)
                data += await asyncio.wait_for(reader.readexactly(4), 5)  # "*0\r\n" after it
                assert data.endswith(b"*0\r\n")
            else:
                assert await asyncio.wait_for(reader.readexactly(len(reply)), 5) == reply
    finally:
        writer.close()
