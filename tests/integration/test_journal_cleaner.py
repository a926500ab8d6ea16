"""The re-admission clean-up against real redis-servers, when its connection to the gutter has
gone stale: the gutter closed it (a restart, or its own idle timeout) while the shard was out.

A closed connection says nothing about the journal. The clean-up must ask again on a new one,
and decide from what the gutter says then: a restarted gutter lost its journal (flush the
shard), a gutter that only dropped the connection still has it (delete the journaled keys and
keep the rest of the shard's cache, instead of a miss storm)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from cachefleet.sidecar.control import ControlConnection
from cachefleet.sidecar.flusher import Flusher
from cachefleet.sidecar.gutter import journal_key
from cachefleet.sidecar.pool import ShardPool, ShardSettings
from cachefleet.sidecar.recovery import GutterMember, JournalCleaner
from cachefleet.sidecar.stats import ShardStats

from tests.support import RedisServer, start_redis_servers
from tests.support.redis_servers import restart_redis

TIMEOUT = 2.0


@pytest.fixture
def shard_and_gutter() -> Iterator[tuple[RedisServer, RedisServer]]:
    with start_redis_servers(2) as (shard, gutter):
        yield shard, gutter


def settings(server: RedisServer) -> ShardSettings:
    return ShardSettings(server.address, "127.0.0.1", server.port, TIMEOUT, TIMEOUT, None, None)


def cleaner_for(gutter: RedisServer) -> tuple[JournalCleaner, GutterMember]:
    loop = asyncio.get_running_loop()
    # Never started: its connections stay idle, so the drain before the journal read is empty.
    pool = ShardPool(settings(gutter), 1, Flusher(loop), ShardStats())
    member = GutterMember(pool, ControlConnection(settings(gutter)))
    return JournalCleaner([member], TIMEOUT, loop.time), member


async def readmit(
    cleaner: JournalCleaner, member: GutterMember, shard: RedisServer, out_since: float
) -> str:
    """The clean-up's steps for ``shard``, out of the ring since ``out_since``."""
    control = ControlConnection(settings(shard))
    try:
        return await cleaner.readmit(shard.address, control, lost=False, out_since=out_since)
    finally:
        control.close()
        member.control.close()


async def test_a_gutter_restart_seen_through_a_stale_connection_flushes_the_shard(
    shard_and_gutter: tuple[RedisServer, RedisServer],
) -> None:
    shard, gutter = shard_and_gutter
    shard.client().set("cached", "old")
    cleaner, member = cleaner_for(gutter)
    await cleaner.poll(lambda name: True, lambda name: None, "test")  # learns the run_id
    assert member.run_id is not None
    out_since = asyncio.get_running_loop().time()
    gutter.process.kill()
    restart_redis(gutter)
    done = await readmit(cleaner, member, shard, out_since)
    assert done == "flushed (a gutter member restarted meanwhile, losing its journal)"
    assert shard.app_keys() == 0


async def test_a_connection_the_gutter_dropped_does_not_flush_the_shard(
    shard_and_gutter: tuple[RedisServer, RedisServer],
) -> None:
    shard, gutter = shard_and_gutter
    shard.client().mset({"written-meanwhile": "old", "kept": "cached"})
    cleaner, member = cleaner_for(gutter)
    await cleaner.poll(lambda name: True, lambda name: None, "test")  # opens its connection
    out_since = asyncio.get_running_loop().time()
    direct = gutter.client()
    direct.zadd(journal_key(shard.address), {"written-meanwhile": 1})
    # The gutter closes the clean-up's idle connection, as its `timeout` setting would.
    assert direct.client_kill_filter(skipme=True, _type="normal") >= 1
    done = await readmit(cleaner, member, shard, out_since)
    assert done == "deleted 1 keys written through the gutter meanwhile"
    assert shard.client().get("written-meanwhile") is None
    assert shard.client().get("kept") == b"cached"
