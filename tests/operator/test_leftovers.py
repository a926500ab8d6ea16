"""The sweep of keys that shards hold from an earlier ring, on real redis-server shards, and the
targets the operator builds for it while a change is Provisioning."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from cachefleet.ring import Ring, Shard, plan_change, planned_ring
from cachefleet_operator import leftovers
from cachefleet_operator.leftovers import (
    RedisLeftoverSweeper,
    SweepTarget,
    leftover_test,
    receiving_shards,
)
from cachefleet_operator.warmup_signal import warmup_target

from tests.operator.fleet import Fleet, cache_cluster
from tests.support import RedisServer, free_port, start_redis
from tests.support.redis_servers import stop_redis

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PASSWORD = "sweep-secret"


def shards(n: int) -> list[Shard]:
    return [Shard(f"shard-{i}") for i in range(n)]


# A key's owners through 4 → 5 → 4, the change that can leave old values behind.
FOUR = planned_ring(shards(4))
FIVE = plan_change(FOUR, shards(5))
FOUR_AGAIN = plan_change(FIVE, shards(4))


def keys_by_kind(shard: str, active: Ring, following: Ring, n: int) -> dict[str, set[bytes]]:
    """``n`` app keys sorted by what the sweep of ``shard`` must do with them."""
    kinds: dict[str, set[bytes]] = {"leftover": set(), "owned": set(), "elsewhere": set()}
    for i in range(n):
        key = (f"{{user:{i}}}:profile" if i % 5 == 0 else f"item:{i}").encode()
        now_here = active.shard_for(key) == shard
        next_here = following.shard_for(key) == shard
        if next_here and not now_here:
            kinds["leftover"].add(key)
        elif now_here:
            kinds["owned"].add(key)
        else:
            kinds["elsewhere"].add(key)
    return kinds


@pytest.fixture
def server() -> Iterator[RedisServer]:
    redis_server = start_redis(password=PASSWORD)
    try:
        yield redis_server
    finally:
        stop_redis(redis_server)


def shard_0_target(server: RedisServer) -> SweepTarget:
    """The sweep of ``server`` as shard-0 when 5 → 4 follows 4 → 5."""
    return SweepTarget(
        namespace="apps",
        cluster="cache",
        uid="uid-1",
        change_id="v3",
        started_at="2026-01-01T00:00:00Z",
        shards=(("shard-0", server.address),),
        active=FIVE,
        following=FOUR_AGAIN,
        password=PASSWORD,
    )


def ticking_clock() -> Callable[[], float]:
    """A clock that moves one second each time it is read, so a budget counts SCAN calls."""
    ticks = count()
    return lambda: float(next(ticks))


def test_receiving_shards_are_the_ones_that_gain_positions() -> None:
    assert receiving_shards(FOUR, FIVE) == ["shard-4"]
    assert receiving_shards(FIVE, FOUR_AGAIN) == ["shard-0", "shard-1", "shard-2", "shard-3"]
    assert receiving_shards(FOUR, FOUR) == []


def test_a_leftover_is_a_key_the_next_ring_gives_here_and_the_active_ring_elsewhere() -> None:
    kinds = keys_by_kind("shard-0", FIVE, FOUR_AGAIN, 4000)
    assert all(len(keys) > 50 for keys in kinds.values()), {k: len(v) for k, v in kinds.items()}
    is_leftover = leftover_test("shard-0", FIVE, FOUR_AGAIN)
    assert {key for keys in kinds.values() for key in keys if is_leftover(key)} == kinds["leftover"]
    # The planes' own keys are never leftovers, wherever they hash.
    own = [f"cachefleet:tomb:item:{i}".encode() for i in range(400)]
    assert any(FOUR_AGAIN.shard_for(k) == "shard-0" != FIVE.shard_for(k) for k in own)
    assert not any(is_leftover(key) for key in own)
    # A shard the active ring does not have (an added one): whatever it will own is a leftover.
    added = leftover_test("shard-4", FOUR, FIVE)
    assert all(added(k) == (FIVE.shard_for(k) == "shard-4") for k in kinds["owned"])


def test_the_sweep_deletes_only_leftovers_and_resumes_where_the_last_turn_stopped(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leftovers, "SCAN_COUNT", 100)
    kinds = keys_by_kind("shard-0", FIVE, FOUR_AGAIN, 3000)
    own = [f"cachefleet:tomb:{key.decode()}".encode() for key in list(kinds["leftover"])[:20]]
    with server.client() as client:
        for keys in kinds.values():
            client.mset({key: b"old" for key in keys})
        client.mset({key: b"1" for key in own})
    target = shard_0_target(server)
    sweeper = RedisLeftoverSweeper(budget_seconds=4, clock=ticking_clock())
    turns = [sweeper.sweep(target, NOW)]
    while not turns[-1].done:
        assert len(turns) < 200, turns[-1]
        turns.append(sweeper.sweep(target, NOW))
    assert len(turns) > 3  # it took several turns, each going on from the last cursor
    assert [t.scanned for t in turns] == sorted(t.scanned for t in turns)
    total = sum(len(keys) for keys in kinds.values()) + len(own)
    assert total <= turns[-1].scanned < 2 * total  # SCAN may return a key twice, not more
    assert turns[-1].deleted == len(kinds["leftover"])
    assert turns[-1].waiting_on is None
    with server.client() as client:
        left = set(client.scan_iter(count=1000))
    assert left == kinds["owned"] | kinds["elsewhere"] | set(own)
    # Done is remembered: the next turn scans nothing again.
    assert sweeper.sweep(target, NOW) == turns[-1]


def test_an_unreachable_shard_holds_the_sweep_and_is_named_until_it_answers(
    server: RedisServer,
) -> None:
    down_port = free_port()
    kinds = {shard: keys_by_kind(shard, FIVE, FOUR_AGAIN, 2000) for shard in ("shard-0", "shard-1")}
    with server.client() as client:
        client.mset({key: b"old" for key in kinds["shard-0"]["leftover"]})
    target = SweepTarget(
        namespace="apps",
        cluster="cache",
        uid="uid-1",
        change_id="v3",
        started_at="2026-01-01T00:00:00Z",
        shards=(("shard-0", server.address), ("shard-1", f"127.0.0.1:{down_port}")),
        active=FIVE,
        following=FOUR_AGAIN,
        password=PASSWORD,
    )
    sweeper = RedisLeftoverSweeper(timeout=0.5)
    first = sweeper.sweep(target, NOW)
    assert not first.done
    assert first.waiting_on is not None and first.waiting_on.startswith(
        f"shard-1 (127.0.0.1:{down_port}): "
    )
    assert first.deleted == len(kinds["shard-0"]["leftover"])  # the reachable shard is swept
    late = start_redis(password=PASSWORD, port=down_port)
    try:
        with late.client() as client:
            client.mset({key: b"old" for key in kinds["shard-1"]["leftover"]})
            client.mset({key: b"new" for key in kinds["shard-1"]["owned"]})
        second = sweeper.sweep(target, NOW)
        assert second.done and second.waiting_on is None
        assert second.deleted == first.deleted + len(kinds["shard-1"]["leftover"])
        with late.client() as client:
            assert set(client.scan_iter(count=1000)) == kinds["shard-1"]["owned"]
    finally:
        stop_redis(late)


def test_another_change_start_or_cluster_sweeps_from_the_first_key(server: RedisServer) -> None:
    kinds = keys_by_kind("shard-0", FIVE, FOUR_AGAIN, 1000)
    target = shard_0_target(server)
    sweeper = RedisLeftoverSweeper()
    assert sweeper.sweep(target, NOW).done
    for other in (
        dataclasses.replace(target, change_id="v4"),
        dataclasses.replace(target, started_at="2026-01-01T00:02:00Z"),
        dataclasses.replace(target, uid="uid-2"),  # deleted and created again, same name
    ):
        with server.client() as client:
            client.mset({key: b"old" for key in kinds["leftover"]})
            assert sweeper.sweep(target, NOW).done  # that sweep is over: it scans nothing
            assert client.exists(*kinds["leftover"]) == len(kinds["leftover"])
        result = sweeper.sweep(other, NOW)
        assert result.done and result.deleted == len(kinds["leftover"]), other
        target = other


def test_a_shard_that_restarts_during_the_sweep_is_scanned_again_from_its_first_key(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leftovers, "SCAN_COUNT", 50)
    kinds = keys_by_kind("shard-0", FIVE, FOUR_AGAIN, 6000)
    with server.client() as client:
        client.mset({key: b"old" for keys in kinds.values() for key in keys})
    target = shard_0_target(server)
    sweeper = RedisLeftoverSweeper(budget_seconds=20, clock=ticking_clock())
    first = sweeper.sweep(target, NOW)
    assert not first.done and first.scanned < 6000 / 2
    # The same shard comes back as another process with the keys again (a snapshot reload):
    # the old cursor would skip a part of its table.
    stop_redis(server)
    again = start_redis(password=PASSWORD, port=server.port)
    try:
        with again.client() as client:
            client.mset({key: b"old" for keys in kinds.values() for key in keys})
        result = first
        while not result.done:
            result = sweeper.sweep(target, NOW)
        with again.client() as client:
            left = set(client.scan_iter(count=1000))
        assert left == kinds["owned"] | kinds["elsewhere"]
    finally:
        stop_redis(again)


def provisioning(before: int, after: int, **spec: Any) -> dict[str, Any]:
    fleet = Fleet(cache_cluster(shards=before, **spec))
    fleet.reconcile()
    fleet.reconcile()
    fleet.leftovers = None  # nothing swept: the change stays Provisioning
    fleet.sidecars = {"app-0": "an-older-config"}  # and the sweep does not begin
    fleet.edit(shards=after)
    fleet.reconcile()
    fleet.reconcile()
    assert fleet.phase == "Provisioning"
    return fleet.cluster


def test_provisioning_sweeps_every_shard_that_gets_keys_and_new_ones_only_if_persistent() -> None:
    cluster = provisioning(5, 4)
    target = warmup_target(cluster, "pw")
    assert target is not None and target.heartbeat_addresses
    assert target.sweep is None  # not before the sidecars run the Provisioning config
    cluster["status"]["warmUp"]["sweepStartedAt"] = "2026-11-26T12:00:10Z"
    target = warmup_target(cluster, "pw")
    assert target is not None and target.sweep is not None
    assert target.sweep.uid == "uid-cache"
    assert target.sweep.started_at == "2026-11-26T12:00:10Z"
    assert [shard for shard, _ in target.sweep.shards] == [f"shard-{i}" for i in range(4)]
    assert target.sweep.shards[0][1].startswith("cache-shard-0")
    assert target.sweep.password == "pw" and target.addresses == ()
    assert target.sweep.change_id == target.change_id
    assert receiving_shards(target.sweep.active, target.sweep.following) == [
        f"shard-{i}" for i in range(4)
    ]

    # A shard the change adds starts empty, unless it keeps snapshots on a volume that may have
    # outlived an earlier shard of the same name.
    cluster = provisioning(4, 5)
    cluster["status"]["warmUp"]["sweepStartedAt"] = "2026-11-26T12:00:10Z"
    target = warmup_target(cluster, None)
    assert target is not None and target.sweep is not None and target.sweep.shards == ()
    cluster = provisioning(4, 5, persistence={"enabled": True})
    cluster["status"]["warmUp"]["sweepStartedAt"] = "2026-11-26T12:00:10Z"
    target = warmup_target(cluster, None)
    assert target is not None and target.sweep is not None
    assert [shard for shard, _ in target.sweep.shards] == ["shard-4"]


def test_every_key_the_planes_keep_for_themselves_is_under_the_prefix_the_sweep_spares() -> None:
    from cachefleet.config import keys
    from cachefleet.sidecar import gutter, recovery, warmup

    own = keys.OWN_KEY_PREFIX
    prefixes = [
        keys.HEARTBEAT_KEY,
        keys.warmup_stats_key("v1"),
        warmup.TOMBSTONE_PREFIX.decode(),
        gutter.JOURNAL_PREFIX,
        recovery.LOCK_PREFIX,
    ]
    assert all(prefix.startswith(own) for prefix in prefixes), prefixes


def test_a_persistent_shard_counts_as_swept_only_once_a_snapshot_after_the_sweep_is_written(
    server: RedisServer, tmp_path: Path
) -> None:
    kinds = keys_by_kind("shard-0", FIVE, FOUR_AGAIN, 3000)
    with server.client() as client:
        client.mset({key: b"old" for keys in kinds.values() for key in keys})
        client.save()  # the snapshot a restart would reload: leftovers included
        saves_before = int(client.info("persistence")["rdb_saves"])
    sweeper = RedisLeftoverSweeper()
    plain = sweeper.sweep(shard_0_target(server), NOW)
    assert plain.done  # without persistence no snapshot is asked for
    with server.client() as client:
        assert int(client.info("persistence")["rdb_saves"]) == saves_before
        client.mset({key: b"old" for key in kinds["leftover"]})

    target = dataclasses.replace(shard_0_target(server), persistent=True, change_id="v4")
    turns = [sweeper.sweep(target, NOW)]
    while not turns[-1].done:
        assert len(turns) < 100, turns[-1]
        time.sleep(0.05)
        turns.append(sweeper.sweep(target, NOW))
    assert len(turns) > 1  # the first turn swept and asked for the snapshot; not done yet
    assert turns[-1].deleted == len(kinds["leftover"])
    with server.client() as client:
        assert int(client.info("persistence")["rdb_saves"]) > saves_before
    # The shard restarts from its snapshot: nothing of the earlier ring comes back.
    snapshot = tmp_path / "dump.rdb"
    shutil.copy(server.directory / "dump.rdb", snapshot)
    stop_redis(server)
    directory = tmp_path / "restarted"
    directory.mkdir()
    shutil.copy(snapshot, directory / "dump.rdb")
    again = start_redis(password=PASSWORD, port=server.port, directory=directory)
    try:
        with again.client() as client:
            assert set(client.scan_iter(count=1000)) == kinds["owned"] | kinds["elsewhere"]
    finally:
        stop_redis(again)
