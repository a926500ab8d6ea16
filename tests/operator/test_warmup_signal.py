"""The warm-up signal: the file the e2e tests feed, and the sidecars' counters and heartbeats on
real redis-server shards.

These need no Kubernetes; they sit with the e2e suite because the e2e tests drive the operator
through the file signal, and this is where its format is pinned.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cachefleet.config.keys import HEARTBEAT_SECONDS
from cachefleet_operator.warmup_signal import (
    FileWarmupSignal,
    RedisWarmupSignal,
    WarmupSignalError,
    WarmupTarget,
    parse_warmup_signal,
)

from tests.support import RedisServer, start_redis
from tests.support.redis_servers import stop_redis

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = WarmupTarget(namespace="cache", cluster="sessions", addresses=())


def test_file_signal_reads_the_hit_ratio_and_per_cluster_overrides(tmp_path: Path) -> None:
    path = tmp_path / "signal.json"
    signal = FileWarmupSignal(path)
    assert signal.observe(TARGET, NOW).hit_ratio is None  # no file yet: nothing measured
    path.write_text(json.dumps({"hitRatio": 0.5}))
    observation = signal.observe(TARGET, NOW)
    assert observation.hit_ratio == 0.5 and observation.observed_at == NOW
    path.write_text(
        json.dumps({"hitRatio": 0.5, "clusters": {"cache/sessions": {"hitRatio": 0.97}}})
    )
    assert signal.observe(TARGET, NOW).hit_ratio == 0.97
    other = WarmupTarget(namespace="cache", cluster="other", addresses=())
    assert signal.observe(other, NOW).hit_ratio == 0.5


@pytest.mark.parametrize(
    "content", ["{not json", '{"hitRatio": 1.5}', '{"hitratio": 0.9}', '{"hitRatio": "high"}']
)
def test_file_signal_refuses_malformed_content(tmp_path: Path, content: str) -> None:
    path = tmp_path / "signal.json"
    path.write_text(content)
    with pytest.raises(WarmupSignalError, match=str(path)):
        FileWarmupSignal(path).observe(TARGET, NOW)


def test_parse_warmup_signal() -> None:
    assert isinstance(parse_warmup_signal("redis"), RedisWarmupSignal)
    signal = parse_warmup_signal("file:/tmp/x.json")
    assert isinstance(signal, FileWarmupSignal) and signal.path == Path("/tmp/x.json")
    for bad in ("file:", "prometheus", ""):
        with pytest.raises(WarmupSignalError, match="redis' or 'file:PATH"):
            parse_warmup_signal(bad)


@pytest.fixture
def shards() -> Iterator[list[RedisServer]]:
    servers = [start_redis(password="s3cret") for _ in range(2)]
    try:
        yield servers
    finally:
        for server in servers:
            stop_redis(server)


def _measured(server: RedisServer, change: str, hits: int, misses: int) -> None:
    """What a sidecar adds to a warming shard's counters after shadowed reads."""
    client = server.client()
    client.hincrby(f"cachefleet:warmup:{change}", "hits", hits)
    client.hincrby(f"cachefleet:warmup:{change}", "misses", misses)
    client.close()


@pytest.mark.integration
def test_redis_signal_sums_shards_and_measures_since_the_last_reading(
    shards: list[RedisServer],
) -> None:
    target = WarmupTarget(
        "cache", "sessions", tuple(s.address for s in shards), "s3cret", change_id="v2"
    )
    signal = RedisWarmupSignal()
    assert signal.observe(target, NOW).hit_ratio is None  # nothing measured yet
    _measured(shards[0], "v2", hits=3, misses=1)
    _measured(shards[1], "v2", hits=1, misses=3)
    _measured(shards[1], "v1", hits=100, misses=0)  # another change's counters do not count
    assert signal.observe(target, NOW).hit_ratio == pytest.approx(0.5)
    # Only what happened since the previous reading counts: the shards warmed up.
    _measured(shards[0], "v2", hits=9, misses=1)
    assert signal.observe(target, NOW).hit_ratio == pytest.approx(0.9)
    # Plain traffic on the shard (its own keys) moves nothing.
    client = shards[0].client()
    for _ in range(50):
        client.get("anything")
    client.close()
    assert signal.observe(target, NOW).hit_ratio is None


@pytest.mark.integration
def test_redis_signal_reports_nothing_when_a_shard_does_not_answer(
    shards: list[RedisServer],
) -> None:
    _measured(shards[0], "v2", hits=5, misses=0)
    dead = shards[1].address
    stop_redis(shards[1])
    target = WarmupTarget("cache", "sessions", (shards[0].address, dead), "s3cret", "v2")
    assert RedisWarmupSignal(timeout=0.5).observe(target, NOW).hit_ratio is None
    wrong_password = WarmupTarget("cache", "sessions", (shards[0].address,), "nope", "v2")
    assert RedisWarmupSignal(timeout=0.5).observe(wrong_password, NOW).hit_ratio is None


@pytest.mark.integration
def test_sidecar_reports_keep_the_newest_recent_entry_per_sidecar(
    shards: list[RedisServer],
) -> None:
    now = 1_000_000.0
    old, new = shards[0].client(), shards[1].client()
    old.hset("cachefleet:sidecars", mapping={"pod-a:1": f"3-aaa {now - 10:.0f}",
                                             "pod-b:1": f"3-aaa {now - 10:.0f}",
                                             "gone:1": f"2-zzz {now - 600:.0f}"})  # fmt: skip
    new.hset("cachefleet:sidecars", mapping={"pod-a:1": f"4-bbb {now - 2:.0f}"})
    old.close()
    new.close()
    target = WarmupTarget(
        "cache", "sessions", (), "s3cret", heartbeat_addresses=tuple(s.address for s in shards)
    )
    clock = [now]
    signal = RedisWarmupSignal(clock=lambda: clock[0])
    # Hashes the operator has not watched yet: they may have just been emptied and be filling
    # up again, so they list no sidecar for two heartbeats' time.
    assert signal.sidecars(target, NOW) is None
    clock[0] = now + 2 * HEARTBEAT_SECONDS - 1
    assert signal.sidecars(target, NOW) is None
    clock[0] = now + 2 * HEARTBEAT_SECONDS
    reports = signal.sidecars(target, NOW)
    assert reports is not None
    assert reports.versions == {"pod-a:1": "4-bbb", "pod-b:1": "3-aaa"}
    nobody = WarmupTarget("cache", "sessions", (), "s3cret", heartbeat_addresses=("127.0.0.1:1",))
    assert RedisWarmupSignal(timeout=0.5).sidecars(nobody, NOW) is None


@pytest.mark.integration
def test_an_emptied_heartbeat_hash_is_no_list_of_sidecars(shards: list[RedisServer]) -> None:
    """A restarted or flushed shard loses every sidecar's entry at once; until they had time
    to write them again, an empty hash must not read as "no sidecar lags"."""
    clock = [1_000_000.0]
    target = WarmupTarget(
        "cache", "sessions", (), "s3cret", heartbeat_addresses=(shards[0].address,)
    )
    signal = RedisWarmupSignal(clock=lambda: clock[0])
    with shards[0].client() as shard:
        shard.delete("cachefleet:sidecars")
        shard.hset("cachefleet:sidecars", "pod-a:1", f"4-bbb {clock[0]:.0f}")
        assert signal.sidecars(target, NOW) is None
        clock[0] += 2 * HEARTBEAT_SECONDS
        reports = signal.sidecars(target, NOW)
        assert reports is not None and reports.versions == {"pod-a:1": "4-bbb"}
        shard.delete("cachefleet:sidecars")  # FLUSHALL, or a restart without persistence
        assert signal.sidecars(target, NOW) is None
        clock[0] += 2 * HEARTBEAT_SECONDS
        reports = signal.sidecars(target, NOW)
        assert reports is not None and reports.versions == {}  # nobody wrote again: none left
