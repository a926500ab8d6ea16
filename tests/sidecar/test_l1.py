"""Hot keys and L1 with real shards and an in-process sidecar (both builds: make test runs
tests/sidecar again with CACHEFLEET_PURE_PYTHON=1)."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
import redis.asyncio as aredis
from cachefleet.config import HotKeysConfig, L1Config, ShardEndpoint, SidecarConfig
from cachefleet.ring import Shard, classic_ring
from cachefleet.sidecar import Sidecar
from cachefleet.sidecar.admin import hot_keys_document
from cachefleet.sidecar.route_table import whole_key_hash

from tests.support.relay import relay

from .conftest import Shard_, make_config, until, with_sidecar

pytestmark = pytest.mark.integration

HOT = HotKeysConfig(enabled=True, threshold_per_second=100)
L1 = L1Config(enabled=True, ttl_ms=10_000)


def l1_config(shards: list[Shard_], **fields: object) -> SidecarConfig:
    fields.setdefault("hot_keys", HOT)
    fields.setdefault("l1", L1)
    return make_config([s.address for s in shards], **fields)


def owner(shards: list[Shard_], key: bytes) -> Shard_:
    ring = classic_ring([Shard(s.address) for s in shards])
    name = ring.shard_for(key)
    return next(s for s in shards if s.address == name)


def get_calls(shard: Shard_, command: str = "get") -> int:
    """Calls of ``command`` the shard has executed (INFO commandstats)."""
    out = subprocess.run(
        ["redis-cli", "-p", str(shard.port), "INFO", "commandstats"],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def hammer(client: aredis.Redis, key: bytes, count: int) -> list[bytes | None]:
    return [await client.get(key) for _ in range(count)]


async def test_a_hot_key_is_detected_and_served_from_l1(flushed: list[Shard_]) -> None:
    key = b"celebrity"
    home = owner(flushed, key)

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        await client.set(key, "star")
        cold = await client.get(b"someone-else")
        assert cold is None
        await hammer(client, key, 400)  # well past 100/s: hot, then filled
        doc = hot_keys_document(app)
        entry = next(e for e in doc["keys"] if e["key"] == "celebrity")  # type: ignore[union-attr]
        assert entry["hot"] and entry["inL1"], doc
        before = get_calls(home)
        values = await hammer(client, key, 500)
        assert values == [b"star"] * 500
        reached = get_calls(home) - before
        assert reached <= 5, f"{reached} of 500 GETs still reached the shard"
        metrics = app._admin.respond("/metrics")[2].decode()
        hits = next(
            line
            for line in metrics.splitlines()
            if line.startswith("cachefleet_sidecar_l1_hits_total")
        )
        assert float(hits.split()[-1]) >= 495
        assert "cachefleet_sidecar_hot_keys 1.0" in metrics

    await with_sidecar(lambda: l1_config(flushed), body)


async def test_the_get_parts_of_mget_come_from_l1(flushed: list[Shard_]) -> None:
    hot = b"mget:hot"
    home = owner(flushed, hot)
    # A cold key on the hot key's shard and one elsewhere: the part for the hot key's shard
    # is answered partly from L1, partly by the shard.
    candidates = [b"mget:cold:%d" % i for i in range(200)]
    beside = next(k for k in candidates if owner(flushed, k) is home)
    away = next(k for k in candidates if owner(flushed, k) is not home)

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        await client.set(hot, "h")
        await client.set(beside, "b")
        await client.set(away, "a")
        await hammer(client, hot, 400)
        assert app.l1 is not None and hot in app.l1.entries
        hits_before = app.l1.stats.hits
        for _ in range(50):
            assert await client.mget([hot, away, hot]) == [b"h", b"a", b"h"]
        # the hot key's parts never reached its shard, neither as MGET nor as GET
        reached = get_calls(home, "mget"), get_calls(home)
        for _ in range(50):
            assert await client.mget([hot, beside, hot]) == [b"h", b"b", b"h"]
        assert get_calls(home, "mget") == reached[0] + 50  # only the cold key went
        assert get_calls(home) == reached[1]
        assert app.l1.stats.hits - hits_before >= 200
        await client.set(beside, "b2")  # and the answer follows a write of the cold one
        assert await client.mget([beside, hot]) == [b"b2", b"h"]

    # A low threshold: on a loaded machine 50 MGETs in a row can arrive slower than 100 hot
    # parts a second, and the key would cool (rightly) before the loop ends.
    slow = HotKeysConfig(enabled=True, threshold_per_second=20)
    await with_sidecar(lambda: l1_config(flushed, hot_keys=slow), body)


async def test_writes_through_the_sidecar_and_to_the_shard_invalidate(
    flushed: list[Shard_],
) -> None:
    key = b"hot:1"
    home = owner(flushed, key)

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        await client.set(key, "v1")
        await hammer(client, key, 400)
        assert app.l1 is not None and key in app.l1.entries
        await client.set(key, "v2")  # through this sidecar: dropped at once
        assert await client.get(key) == b"v2"
        await hammer(client, key, 50)
        direct = aredis.Redis(port=home.port, protocol=2)
        try:
            await direct.set(key, "v3")  # past the sidecar: the shard pushes an invalidation
            waited = await until(
                lambda: asyncio.sleep(0, app.l1 is not None and key not in app.l1.entries), 1.0
            )
            assert await client.get(key) == b"v3"
            assert waited < 0.05, f"invalidated after {waited * 1000:.0f} ms"
            await direct.delete(key)
            await until(lambda: asyncio.sleep(0, key not in app.l1.entries), 1.0)  # type: ignore[union-attr]
            assert await client.get(key) is None
        finally:
            await direct.aclose()
        assert app.l1.stats.invalidations.get("push", 0) >= 2

    await with_sidecar(lambda: l1_config(flushed), body)


async def test_a_broken_tracking_link_flushes_l1_and_turns_it_off(flushed: list[Shard_]) -> None:
    key = b"hot:2"
    home = owner(flushed, key)

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        await client.set(key, "v1")
        await hammer(client, key, 400)
        assert app.l1 is not None and key in app.l1.entries
        direct = aredis.Redis(port=home.port, protocol=2)
        try:
            listing = await direct.execute_command("CLIENT", "LIST")
            line = next(x for x in listing.decode().splitlines() if "name=cachefleet-tracking" in x)
            client_id = line.split("id=")[1].split()[0]
            await direct.execute_command("CLIENT", "KILL", "ID", client_id)
            await until(lambda: asyncio.sleep(0, key not in app.l1.entries), 1.0)  # type: ignore[union-attr]
            await direct.set(key, "v2")
            assert await client.get(key) == b"v2"

            # Back: L1 serves again once the link (and its tracking) is up, however long the
            # reconnection takes on a loaded machine.
            async def served_from_l1() -> bool:
                assert await hammer(client, key, 50) == [b"v2"] * 50
                return app.l1 is not None and key in app.l1.entries

            await until(served_from_l1, 5.0)
        finally:
            await direct.aclose()

    await with_sidecar(lambda: l1_config(flushed), body)


async def test_a_fill_racing_a_write_is_never_cached(flushed: list[Shard_]) -> None:
    """The value a fill fetched is older than a write that landed while it was in flight (a
    delaying relay in front of the shard): it must not be cached."""
    key = b"hot:3"
    home = owner(flushed, key)
    with relay(home.port, delay=0.3) as slow:

        def config() -> SidecarConfig:
            built = l1_config(flushed, l1=L1Config(enabled=True, ttl_ms=60_000))
            shards = [
                ShardEndpoint(name=s.name, address=slow.address) if s.name == home.address else s
                for s in built.shards
            ]
            return built.model_copy(update={"shards": shards})

        async def body(app: Sidecar, client: aredis.Redis) -> None:
            other = aredis.Redis(port=app.listen_port, protocol=2)
            try:
                await client.set(key, "old")
                tracker = app.hot_keys
                assert tracker is not None
                for _ in range(300):  # hot without reading: count the key directly
                    tracker.observe(key, whole_key_hash(key))
                assert key in tracker.hot_keys()
                fill = asyncio.create_task(client.get(key))  # a fill, 0.3 s in flight
                await asyncio.sleep(0.1)
                # Lands on the shard before the fill's answer comes back; its own answer and
                # the shard's invalidation push come back 0.3 s later, after the fill's.
                write = asyncio.create_task(other.set(key, "new"))
                assert await fill == b"old"
                assert app.l1 is not None and key not in app.l1.entries, "cached a stale fill"
                await write
                assert await client.get(key) == b"new"
            finally:
                await other.aclose()

        await with_sidecar(config, body)


async def test_hotkeys_endpoint_without_hot_key_detection(flushed: list[Shard_]) -> None:
    async def body(app: Sidecar, client: aredis.Redis) -> None:
        status, _, payload = app._admin.respond("/hotkeys")
        assert status == 200 and json.loads(payload) == {"enabled": False, "keys": []}

    await with_sidecar(lambda: make_config([s.address for s in flushed]), body)
