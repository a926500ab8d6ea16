"""Shadow, grace and drain routes with real shards and an in-process sidecar (both builds: make test
runs tests/sidecar again with CACHEFLEET_PURE_PYTHON=1).

The fleet goes from four shards to five: shard 4 is new, and the keys that move to it are the
ones these tests look at.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Literal

import pytest
import redis.asyncio as aredis
from cachefleet.config import GutterConfig, HealthConfig, ShardEndpoint, SidecarConfig, WarmupConfig
from cachefleet.ring import Ring, RingAssignment, Shard, classic_ring
from cachefleet.sidecar import Sidecar
from cachefleet.sidecar.warmup import in_shadow, tombstone

from tests.support.ports import free_port
from tests.support.relay import relay

from .conftest import (
    Shard_,
    flush,
    make_config,
    start_shard,
    start_sidecar,
    until,
    with_sidecar,
)

pytestmark = pytest.mark.integration


def rings(shards: list[Shard_]) -> tuple[Ring, Ring]:
    before = classic_ring([Shard(s.address) for s in shards[:4]])
    after = classic_ring([Shard(s.address) for s in shards])
    return before, after


def warm_config(
    shards: list[Shard_], phase: Literal["shadow", "grace", "drain"] | None, percent: float = 100.0
) -> SidecarConfig:
    """The config of one phase of the 4 -> 5 change; None: the final one (the new ring alone)."""
    before, after = rings(shards)
    active, other = (before, after) if phase == "shadow" else (after, before)
    base = make_config([s.address for s in shards[:4]])
    section = None
    if phase == "shadow":
        section = WarmupConfig(
            phase="shadow",
            shadow_percent=percent,
            next_ring=RingAssignment.from_ring(other),
            change_id="t1",
        )
    elif phase is not None:
        section = WarmupConfig(
            phase=phase, previous_ring=RingAssignment.from_ring(other), change_id="t1"
        )
    return base.model_copy(
        update={
            "shards": [ShardEndpoint(name=s.address, address=s.address) for s in shards],
            "ring": RingAssignment.from_ring(active),
            "warmup": section,
        }
    )


def through(config: SidecarConfig, shard: Shard_, address: str) -> SidecarConfig:
    """``config`` reaching ``shard`` at another address (a relay in front of it)."""
    shards = [
        ShardEndpoint(name=s.name, address=address) if s.name == shard.address else s
        for s in config.shards
    ]
    return config.model_copy(update={"shards": shards})


def moved_keys(shards: list[Shard_], count: int, prefix: str = "m") -> list[bytes]:
    before, after = rings(shards)
    found: list[bytes] = []
    i = 0
    while len(found) < count:
        key = f"{prefix}:{i}".encode()
        if before.shard_for(key) != after.shard_for(key):
            found.append(key)
        i += 1
    return found


def staying_key(shards: list[Shard_]) -> bytes:
    before, after = rings(shards)
    return next(
        k for i in range(1000) if before.shard_for(k := f"s:{i}".encode()) == after.shard_for(k)
    )


def direct(shard: Shard_) -> aredis.Redis:
    return aredis.Redis(port=shard.port, protocol=2)


def owner(ring: Ring, shards: list[Shard_], key: bytes) -> Shard_:
    name = ring.shard_for(key)
    return next(s for s in shards if s.address == name)


@pytest.fixture(scope="module")
def five(shards: list[Shard_]) -> list[Shard_]:
    extra = start_shard()
    yield [*shards, extra]
    extra.stop()


@pytest.fixture
def fleet(five: list[Shard_]) -> list[Shard_]:
    flush(five)
    return five


async def test_shadow_mirrors_overwrites_and_deletes_on_read_modify_writes(
    fleet: list[Shard_],
) -> None:
    keys = moved_keys(fleet, 6)
    new = fleet[4]

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        warming = direct(new)
        try:
            await client.set(keys[0], "v1")  # an overwrite: mirrored
            await client.set(keys[1], "v1", ex=100)
            await warming.set(keys[2], "stale")  # an old copy on the warming owner
            await client.incr(keys[2])  # read-modify-write: removed there, tombstoned
            await warming.set(keys[3], "stale")
            await client.delete(keys[3])  # a delete reaches it whatever the percentage
            await warming.set(keys[4], "stale")
            await client.set(keys[4], "new", nx=True)  # conditional: removed, not mirrored
            await client.ping()
            await until(lambda: warming.exists(keys[0]))
            assert await warming.get(keys[0]) == b"v1"
            assert 0 < await warming.ttl(keys[1]) <= 100
            assert await warming.get(keys[2]) is None
            assert await warming.exists(tombstone(keys[2])) == 1
            assert await warming.get(keys[3]) is None
            assert await warming.get(keys[4]) is None
            # The active owners answered the client and hold the truth.
            assert await client.get(keys[2]) == b"1"
            assert await client.get(keys[4]) == b"new"
            # A key that does not move is left alone: its write never reaches the warming
            # owner. A moved key written after it is mirrored on the same connection, so once
            # that mirror has landed, a stray copy of the staying key would have too.
            stay = staying_key(fleet)
            await client.set(stay, "x")
            await client.set(keys[5], "later")
            await until(lambda: warming.exists(keys[5]))
            assert await warming.exists(stay) == 0
            assert await client.get(stay) == b"x"
        finally:
            await warming.aclose()

    await with_sidecar(lambda: warm_config(fleet, "shadow"), body)


async def test_shadow_reads_measure_and_copy_with_the_ttl(fleet: list[Shard_]) -> None:
    before, _ = rings(fleet)
    keys = moved_keys(fleet, 20)
    new = fleet[4]

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        for key in keys:  # written straight to their active owners: the warming one is cold
            async with direct(owner(before, fleet, key)) as active:
                await active.set(key, b"value-" + key, ex=500)
        for key in keys:
            assert await client.get(key) == b"value-" + key
        warming = direct(new)
        try:

            async def all_copied() -> bool:  # the copies land after the replies, one by one
                return bool(await warming.exists(*keys) == len(keys))

            await until(all_copied, 5.0)
            assert 400 < await warming.ttl(keys[0]) <= 500
            stats = app.warmup_stats
            assert sum(stats.misses.values()) == len(keys) and not stats.hits
            assert stats.copies == len(keys)
            for key in keys:  # now warm: hits
                assert await client.get(key) == b"value-" + key
            await until(lambda: asyncio.sleep(0, sum(stats.hits.values()) == len(keys)))
            assert stats.hit_ratio() == 0.5
            # Reported to the warming shard, where the operator reads every sidecar's counts.
            counters = b"cachefleet:warmup:t1"

            async def reported() -> bool:
                got = await warming.hgetall(counters)
                return got == {b"hits": b"20", b"misses": b"20"}

            await until(reported, 5.0)
        finally:
            await warming.aclose()

    await with_sidecar(lambda: warm_config(fleet, "shadow"), body)


async def test_only_keys_inside_the_percentage_are_shadowed(fleet: list[Shard_]) -> None:
    keys = moved_keys(fleet, 200)
    inside = [k for k in keys if in_shadow(k, 2500)]
    assert 20 < len(inside) < 90

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        for key in keys:
            await client.set(key, "v")
        warming = direct(fleet[4])

        async def mirrored() -> bool:
            return bool(await warming.exists(*inside) == len(inside))

        try:
            await until(mirrored)
            present = [k for k in keys if await warming.exists(k)]
            assert present == inside
            # Every write reached the warming owner: the keys outside as invalidations.
            stats = app.warmup_stats
            assert stats.shadowed == {
                "mirror": len(inside),
                "invalidate": len(keys) - len(inside),
            }
        finally:
            await warming.aclose()

    await with_sidecar(lambda: warm_config(fleet, "shadow", percent=25.0), body)


async def test_grace_falls_back_to_the_previous_owner_and_fills(fleet: list[Shard_]) -> None:
    before, _ = rings(fleet)
    keys = moved_keys(fleet, 10)
    new = fleet[4]

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        for key in keys:
            async with direct(owner(before, fleet, key)) as previous:
                await previous.set(key, b"old-home-" + key, px=300_000)
        assert await client.get(keys[0]) == b"old-home-" + keys[0]  # a miss on the new owner
        async with direct(new) as fresh:
            await until(lambda: fresh.exists(keys[0]))
            assert await fresh.get(keys[0]) == b"old-home-" + keys[0]
            assert 250 < await fresh.ttl(keys[0]) <= 300
        assert app.warmup_stats.fallback_hits == 1
        # A delete after the cut-over is not undone by the fallback.
        await client.delete(keys[1])
        assert await client.get(keys[1]) is None
        async with direct(owner(before, fleet, keys[1])) as previous:
            assert await previous.exists(keys[1]) == 0
        # An overwrite neither: the previous owner's value is gone.
        await client.set(keys[2], "newer")
        assert await client.get(keys[2]) == b"newer"
        async with direct(owner(before, fleet, keys[2])) as previous:
            assert await previous.exists(keys[2]) == 0

    await with_sidecar(lambda: warm_config(fleet, "grace"), body)


async def test_drain_answers_from_the_new_owner_alone_and_writes_still_clean_the_previous_one(
    fleet: list[Shard_],
) -> None:
    before, _ = rings(fleet)
    keys = moved_keys(fleet, 3)

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        for key in keys:
            async with direct(owner(before, fleet, key)) as previous:
                await previous.set(key, b"old-home-" + key)

        def on_c_path() -> int:
            return sum(sum(shard.c_requests.values()) for shard in app.stats.shards.values())

        before_get = on_c_path()
        assert await client.get(keys[0]) is None  # no fallback: a miss is a miss
        if app.routes.native is not None:  # the C loop sends it: a GET does not stop
            assert on_c_path() == before_get + 1
        async with direct(fleet[4]) as new:
            assert await new.exists(keys[0]) == 0  # and nothing was filled
        assert app.warmup_stats.fallback_hits == app.warmup_stats.fallback_misses == 0
        await client.delete(keys[1])
        await client.set(keys[2], "newer")
        for key in keys[1:]:
            async with direct(owner(before, fleet, key)) as previous:
                assert await previous.exists(key) == 0
        async with direct(owner(before, fleet, keys[0])) as previous:
            assert await previous.get(keys[0]) == b"old-home-" + keys[0]  # untouched: not read

    await with_sidecar(lambda: warm_config(fleet, "drain"), body)


async def test_a_sidecar_still_in_grace_never_reads_back_what_a_later_sidecar_replaced(
    fleet: list[Shard_],
) -> None:
    """Sidecars take a new config at different moments. One still in grace falls back to the
    previous owner on a miss: the sidecars already past grace must keep cleaning it, which the
    drain phase does and the final config (the new ring alone) does not. Likewise a sidecar
    in drain next to one on the final config reads only the new owner."""
    before, _ = rings(fleet)

    async def seed(keys: list[bytes]) -> None:
        for key in keys:
            async with direct(owner(before, fleet, key)) as previous:
                await previous.set(key, b"old")

    async def stale_after_writes(lagging: Sidecar, ahead: Sidecar, prefix: str) -> int:
        """Deletes and overwrites through ``ahead``, then reads through ``lagging``: how many
        reads returned the value from before the writes."""
        keys = moved_keys(fleet, 20, prefix)
        await seed(keys)
        stale = 0
        async with (
            aredis.Redis(port=ahead.listen_port, protocol=2) as writer,
            aredis.Redis(port=lagging.listen_port, protocol=2) as reader,
        ):
            for i, key in enumerate(keys):
                if i % 2:
                    await writer.delete(key)
                else:
                    await writer.set(key, b"new")
                got = await reader.get(key)
                stale += got == b"old"
                assert got in (None, b"new", b"old")
        return stale

    async def pair(
        lagging_phase: Literal["grace", "drain"], ahead_phase: Literal["drain"] | None, prefix: str
    ) -> int:
        lagging = await start_sidecar(lambda: warm_config(fleet, lagging_phase))
        try:
            ahead = await start_sidecar(lambda: warm_config(fleet, ahead_phase))
            try:
                return await stale_after_writes(lagging, ahead, prefix)
            finally:
                await ahead.stop()
        finally:
            await lagging.stop()

    assert await pair("grace", "drain", "gd") == 0
    assert await pair("drain", None, "df") == 0
    # The control: a sidecar on the final config next to one in grace, the step drain removes.
    # Its deletes leave the old value on the previous owner, and the grace fallback reads it.
    assert await pair("grace", None, "gf") == 10


@pytest.mark.parametrize("phase", ["shadow", "grace", "drain"])
async def test_a_write_served_by_the_gutter_still_invalidates_the_other_owner(
    fleet: list[Shard_], phase: Literal["shadow", "grace", "drain"]
) -> None:
    """The owner of a moved key is ejected at this sidecar (a dead address), so the gutter
    serves its writes; the key's owner on the other ring must still lose the old value, since
    another sidecar may see the owner healthy and read there (a grace fallback, a shadow
    copy)."""
    before, after = rings(fleet)
    keys = moved_keys(fleet, 400, "gutter")
    other_ring = after if phase == "shadow" else before
    active_ring = before if phase == "shadow" else after
    dead = next(s for s in fleet if s.address == active_ring.shard_for(keys[0]))
    keys = [k for k in keys if active_ring.shard_for(k) == dead.address][:2]
    assert len(keys) == 2
    gutter = start_shard()
    try:

        def config() -> SidecarConfig:
            settings = through(
                warm_config(fleet, phase), dead, f"127.0.0.1:{free_port()}"
            )  # refuses connections: ejected at once
            return settings.model_copy(
                update={
                    "gutter": GutterConfig(
                        enabled=True,
                        shards=[ShardEndpoint(name=gutter.address, address=gutter.address)],
                    ),
                    "health": HealthConfig(check_interval_ms=100, max_ejection_percent=50),
                }
            )

        async def body(app: Sidecar, client: aredis.Redis) -> None:
            for key in keys:
                async with direct(owner(other_ring, fleet, key)) as other:
                    await other.set(key, b"old")

            async def ejected() -> bool:
                return not app.health.serves(dead.address)

            await until(ejected)
            await client.set(keys[0], "new")
            await client.delete(keys[1])
            async with direct(gutter) as spare:
                assert await spare.get(keys[0]) == b"new"  # the gutter served the write
            for key in keys:
                async with direct(owner(other_ring, fleet, key)) as other:
                    await until(lambda other=other, key=key: _gone(other, key))

        await with_sidecar(config, body)
    finally:
        gutter.stop()


async def _gone(client: aredis.Redis, key: bytes) -> bool:
    return await client.exists(key) == 0


async def test_a_multi_key_write_cleans_each_key_on_its_own_previous_owner(
    fleet: list[Shard_],
) -> None:
    """A script writing two moved keys goes to their one new owner, but their previous owners
    differ: each key must be deleted on its own, or a grace fallback reads the second one's
    old value."""
    before, _ = rings(fleet)
    moved = moved_keys(fleet, 40, "multi")
    first = moved[0]
    second = next(k for k in moved if before.shard_for(k) != before.shard_for(first))
    delete_second = "return redis.call('DEL', KEYS[2])"

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        for key in (first, second):
            async with direct(owner(before, fleet, key)) as previous:
                await previous.set(key, b"old")
        await client.eval(delete_second, 2, first, second)
        async with direct(owner(before, fleet, second)) as previous:
            await until(lambda: _gone(previous, second))
        assert await client.get(second) is None
        assert await client.get(first) is None  # deleted on its previous owner too

    await with_sidecar(lambda: warm_config(fleet, "grace"), body)


async def test_a_multi_key_write_leaves_its_keys_that_did_not_move_alone(
    fleet: list[Shard_],
) -> None:
    """In shadow, a script writes a moved key and a key that stays on the same shard: only the
    moved one is invalidated on the next ring; the other's "other owner" is the shard the
    write goes to, where deleting it would undo the write."""
    before, after = rings(fleet)
    moved = moved_keys(fleet, 1, "home")[0]
    home = before.shard_for(moved)
    staying = next(
        k
        for i in range(10_000)
        if before.shard_for(k := f"stay:{i}".encode()) == home and after.shard_for(k) == home
    )
    set_both = "redis.call('SET', KEYS[1], 'new'); redis.call('SET', KEYS[2], 'new')"

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        async with direct(fleet[4]) as warming:
            await warming.set(moved, b"old")
        await client.eval(set_both, 2, moved, staying)
        async with direct(fleet[4]) as warming:
            await until(lambda: _gone(warming, moved))
        await client.ping()
        assert await client.get(staying) == b"new"
        assert await client.get(moved) == b"new"

    await with_sidecar(lambda: warm_config(fleet, "shadow", percent=0.0), body)


async def test_an_invalidation_that_missed_a_shard_still_serving_reaches_it_when_it_answers(
    fleet: list[Shard_],
) -> None:
    """The warming shard's connections drop, but it is never ejected (maxEjectionPercent 0):
    the invalidation that could not be sent is remembered and delivered as soon as the shard
    answers again, with no re-admission to wait for."""
    key = moved_keys(fleet, 1, "unsynced")[0]
    warming = fleet[4]
    with relay(warming.port) as link:

        def config() -> SidecarConfig:
            settings = through(warm_config(fleet, "shadow", percent=0.0), warming, link.address)
            return settings.model_copy(
                update={"health": HealthConfig(check_interval_ms=100, max_ejection_percent=0)}
            )

        async def body(app: Sidecar, client: aredis.Redis) -> None:
            async with direct(warming) as shard:
                await shard.set(key, b"old")
                link.cut()
                await client.set(key, "new")
                assert key in app.warmup_stats.lost.get(warming.address, set())
                assert await shard.get(key) == b"old"
                link.cut_off = False
                await until(lambda: _gone(shard, key))
                assert warming.address not in app.warmup_stats.lost

        await with_sidecar(config, body)


async def test_a_fill_racing_a_delete_never_brings_the_value_back(fleet: list[Shard_]) -> None:
    """A GET misses on the new owner and falls back to a slow previous owner (a delaying relay);
    meanwhile a DEL of the key lands. The previous owner's answer and the fill come after the
    DEL: the tombstone the DEL left on the new owner makes the fill a no-op."""
    before, _ = rings(fleet)
    key = moved_keys(fleet, 1)[0]
    previous = owner(before, fleet, key)
    with relay(previous.port, delay=0.3) as slow:

        def config() -> SidecarConfig:
            return through(warm_config(fleet, "grace"), previous, slow.address)

        async def body(app: Sidecar, client: aredis.Redis) -> None:
            async with direct(previous) as home:
                await home.set(key, "old")
            other = aredis.Redis(port=app.listen_port, protocol=2)
            try:
                read = asyncio.create_task(client.get(key))
                await asyncio.sleep(0.1)  # the GET waits on the slow previous owner
                assert await other.delete(key) == 0  # the new owner had nothing yet
                assert await read == b"old"  # read before the delete: its value then
                await asyncio.sleep(0.5)  # the fill has arrived (and done nothing)
                assert await client.get(key) is None
                async with direct(fleet[4]) as fresh:
                    assert await fresh.exists(key) == 0
                    assert await fresh.exists(tombstone(key)) == 1
            finally:
                await other.aclose()

        await with_sidecar(config, body)


async def test_a_copy_racing_a_delete_never_brings_the_value_back(fleet: list[Shard_]) -> None:
    """A shadowed GET misses on the warming owner, so its value is copied from a slow active
    owner (a delaying relay): DUMP is read, then the key is deleted before the RESTORE lands.
    The delete's tombstone on the warming owner makes the RESTORE a no-op."""
    before, _ = rings(fleet)
    key = moved_keys(fleet, 1, prefix="c")[0]
    active = owner(before, fleet, key)
    with relay(active.port, delay=0.3) as slow:

        def config() -> SidecarConfig:
            return through(warm_config(fleet, "shadow"), active, slow.address)

        async def body(app: Sidecar, client: aredis.Redis) -> None:
            async with direct(active) as home:
                await home.set(key, "old")
            other = aredis.Redis(port=app.listen_port, protocol=2)
            try:
                assert await client.get(key) == b"old"  # 0.3 s; then DUMP goes out
                await asyncio.sleep(0.1)  # DUMP has run, its answer is on its way back
                assert await other.delete(key) == 1
                await asyncio.sleep(0.6)  # the RESTORE has arrived (and done nothing)
                async with direct(fleet[4]) as warming:
                    assert await warming.exists(key) == 0
                    assert await warming.exists(tombstone(key)) == 1
                assert app.warmup_stats.copies == 1  # it was sent: the script declined it
            finally:
                await other.aclose()

        await with_sidecar(config, body)


async def test_a_stalled_or_dead_warming_shard_does_not_slow_the_app(fleet: list[Shard_]) -> None:
    """The same read/write loop on moved keys with the warming shard healthy, stopped
    (SIGSTOP: it accepts and never answers) and unreachable: the app's p99 stays put."""
    keys = moved_keys(fleet, 50)
    warming = fleet[4]

    async def p99(client: aredis.Redis) -> float:
        loop = asyncio.get_running_loop()
        times = []
        for round_number in range(4):
            for key in keys:
                started = loop.time()
                assert await client.set(key, round_number)
                assert await client.get(key) == str(round_number).encode()
                times.append(loop.time() - started)
        times.sort()
        return times[int(len(times) * 0.99)]

    async def body(app: Sidecar, client: aredis.Redis) -> None:
        healthy = await p99(client)
        warming.process.send_signal(signal.SIGSTOP)
        try:
            stalled = await p99(client)
            await asyncio.sleep(1.2)  # past the request timeout: its connection fails
            after = await p99(client)
        finally:
            warming.process.send_signal(signal.SIGCONT)
        print(
            f"p99 healthy {healthy * 1000:.2f} ms, stalled {stalled * 1000:.2f} ms, "
            f"after the timeout {after * 1000:.2f} ms"
        )
        # Noise on a shared 2-core machine is a few ms; a blocked path would be 1000 ms.
        assert stalled < healthy + 0.05 and after < healthy + 0.05
        stats = app.warmup_stats
        assert stats.dropped > 0 or stats.lost.get(warming.address)

    await with_sidecar(lambda: warm_config(fleet, "shadow"), body)
