"""The smart client against the sidecar on real shards: the same key on the same shard for many
random keys and hash tags, the same splitting and refusals, reloads, and the gutter when a shard
is down."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cachefleet.client import ShardedRedis
from cachefleet.config import GutterConfig, HealthConfig, PoolConfig, ShardEndpoint, SidecarConfig

from tests.support import (
    RedisServer,
    sidecar_config,
    start_redis_servers,
    start_sidecar,
    write_config,
)
from tests.support.redis_servers import restart_redis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    with start_redis_servers(5) as started:
        yield started


def config_for(servers: list[RedisServer]) -> SidecarConfig:
    shards, gutter = servers[:4], servers[4]
    return sidecar_config([s.address for s in shards]).model_copy(
        update={
            "gutter": GutterConfig(
                enabled=True, shards=[ShardEndpoint(name="gutter-0", address=gutter.address)]
            ),
            "health": HealthConfig(check_interval_ms=200),
            "pool": PoolConfig(request_timeout_ms=500),
        }
    )


def written_config(servers: list[RedisServer], tmp_path: Path) -> tuple[SidecarConfig, Path]:
    """The config and the file the client reads it from (the sidecar's own format)."""
    config = config_for(servers)
    path = tmp_path / "sidecar.json"
    write_config(path, config)
    return config, path


def written_where(servers: list[RedisServer], key: bytes) -> list[str]:
    found = []
    for server in servers:
        with server.client() as client:
            if client.exists(key):
                found.append(server.address)
    return found


def test_the_same_key_reaches_the_same_shard_as_through_the_sidecar(
    servers: list[RedisServer], tmp_path: Path
) -> None:
    config, path = written_config(servers, tmp_path)
    rng = random.Random(5)
    keys = [rng.randbytes(rng.randint(1, 24)) for _ in range(150)]
    keys += [b"{user%d}:%s" % (i, s) for i in range(25) for s in (b"a", b"profile")]
    with start_sidecar(config=config) as sidecar, ShardedRedis(path) as client:
        through_sidecar = sidecar.client(protocol=2)
        for key in keys:
            through_sidecar.set(key, b"s")
            placed_by_sidecar = written_where(servers[:4], key)
            for server in servers[:4]:
                with server.client() as direct:
                    direct.delete(key)
            assert client.set(key, b"c")
            placed_by_client = written_where(servers[:4], key)
            assert placed_by_client == placed_by_sidecar == [client.shard_of(key)], key
            assert through_sidecar.get(key) == b"c"
        through_sidecar.close()


def test_splitting_refusals_and_reloads(servers: list[RedisServer], tmp_path: Path) -> None:
    _config, path = written_config(servers, tmp_path)
    with ShardedRedis(path, reload_seconds=0.0) as client:
        pairs = {f"k{i}".encode(): f"v{i}".encode() for i in range(30)}
        assert client.mset(pairs) is True
        assert client.mget(list(pairs)) == list(pairs.values())
        assert client.exists(*pairs) == 30
        assert client.delete(*list(pairs)[:10]) == 10
        # Keys that share a hash tag stay together, so a two-key command works on them.
        assert client.set("{t}a", b"moved")
        assert client.execute_command("RENAME", "{t}a", "{t}b")
        assert client.get("{t}b") == b"moved"
        assert client.get("{t}a") is None
    with ShardedRedis(path) as client:
        with pytest.raises(redis.ResponseError, match="KEYS is not supported by cachefleet"):
            client.execute_command("KEYS", "*")
        # The shards' ports are random, so pick two keys the ring puts apart.
        first = b"a:1"
        other = next(
            k
            for k in (f"zz:{i}".encode() for i in range(1000))
            if client.shard_of(k) != client.shard_of(first)
        )
        with pytest.raises(redis.ResponseError, match="across shards"):
            client.execute_command("RENAME", first, other)
        with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get'"):
            client.execute_command("GET")
        # cachefleet's own keys (the gutter's journal among them) are refused, as by the sidecar.
        for command in (("SET", "cachefleet:gutter:seq", "1"), ("MGET", "a", "cachefleet:x")):
            with pytest.raises(redis.ResponseError, match="starting with 'cachefleet:'"):
                client.execute_command(*command)
        assert all(s.client().keys("cachefleet:*") == [] for s in servers)
    # A reload: the config now names only the first three shards.
    with ShardedRedis(path, reload_seconds=0.0) as client:
        smaller = sidecar_config([s.address for s in servers[:3]])
        write_config(path, smaller)
        client.get("anything")  # picks the new file up
        assert set(client.names) == {s.address for s in servers[:3]}


def test_a_down_shard_goes_to_the_gutter_and_comes_back_clean(
    servers: list[RedisServer], tmp_path: Path
) -> None:
    config, path = written_config(servers, tmp_path)
    victim = servers[1]
    with ShardedRedis(path, socket_timeout=0.5) as client:
        mine = [
            k
            for k in (f"g{i}".encode() for i in range(400))
            if client.shard_of(k) == victim.address
        ][:10]
        for key in mine:
            client.set(key, b"old")
        victim.process.kill()
        victim.process.wait()
        # A read that finds the shard gone is retried once on the gutter (a miss there).
        assert client.get(mine[0]) is None
        for key in mine:
            assert client.set(key, b"new")
            assert client.get(key) == b"new"
        with servers[4].client() as gutter:
            assert 0 < gutter.ttl(mine[0]) <= config.gutter.ttl_seconds
        restart_redis(victim)
        time.sleep(0.5)
        deadline = time.monotonic() + 15
        while client.ejected and time.monotonic() < deadline:
            client.get(mine[0])
            time.sleep(0.1)
        assert not client.ejected
        # Back and empty: misses, never an old value.
        assert [client.get(k) for k in mine] == [None] * len(mine)
        assert victim.app_keys() == 0


def test_a_stopped_shard_times_out_as_the_config_says(
    servers: list[RedisServer], tmp_path: Path
) -> None:
    """No socket_timeout given: the config's pool.requestTimeoutMs (500 ms here) bounds the
    wait, the shard is ejected and the read answered by the gutter, never a hung caller."""
    _config, path = written_config(servers, tmp_path)
    victim = servers[2]
    with ShardedRedis(path) as client:
        key = next(
            k
            for k in (f"s{i}".encode() for i in range(400))
            if client.shard_of(k) == victim.address
        )
        assert client.set(key, b"before")
        answers: list[object] = []
        reader = threading.Thread(target=lambda: answers.append(client.get(key)), daemon=True)
        victim.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            reader.start()
            reader.join(5.0)
            waited = time.monotonic() - started
        finally:
            victim.process.send_signal(signal.SIGCONT)
        assert not reader.is_alive(), "the read was still blocked on the stopped shard after 5 s"
        assert answers == [None]  # the gutter has not seen the key: a miss, not an error
        assert waited < 2.0
        assert victim.address in client.ejected


def test_gutter_down_too_names_both(servers: list[RedisServer], tmp_path: Path) -> None:
    _config, path = written_config(servers, tmp_path)
    with ShardedRedis(path, socket_timeout=0.5) as client:
        key = next(
            k
            for k in (f"x{i}".encode() for i in range(400))
            if client.shard_of(k) == servers[0].address
        )
        servers[0].process.kill()
        servers[4].process.kill()
        servers[0].process.wait()
        servers[4].process.wait()
        with pytest.raises(redis.ConnectionError) as error:
            client.set(key, b"v")
        with pytest.raises(redis.ConnectionError) as again:
            client.get(key)
        assert servers[0].address in str(again.value) and "gutter" in str(again.value)
        del error
