"""A new ring in the config file applies while clients hammer the sidecar: no request fails,
no connection drops, and afterwards keys go where the new ring says."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
import redis
from cachefleet.ring import Shard, classic_ring
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support import RedisServer, Sidecar, sidecar_config, start_redis_servers, start_sidecar
from tests.support.sidecar import write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WORKERS = 4
RELOAD_TIMEOUT = 15.0
MAX_OPERATIONS = 60_000  # per worker; the time limit below normally ends the run first


@dataclass
class Worker:
    number: int
    protocol: int
    operations: int = 0
    misses: int = 0
    errors: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    socket_changed: bool = False


def _hammer(port: int, worker: Worker, stop: threading.Event) -> None:
    # No retries: a dropped connection must surface as an error, not be papered over.
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        protocol=worker.protocol,
        single_connection_client=True,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=5,
    )
    try:
        client.ping()
        connection = client.connection
        assert connection is not None
        first_socket = connection._sock
        for i in range(MAX_OPERATIONS):
            if stop.is_set():
                break
            key = f"w{worker.number}:{i % 500}"
            value = f"{worker.number}:{i}".encode()
            try:
                client.set(key, value)
                got = client.get(key)
            except redis.RedisError as error:
                worker.errors.append(f"op {i}: {error!r}")
                break
            worker.operations += 2
            if got is None:
                # Only possible when the ring changed between this SET and its GET.
                worker.misses += 1
            elif got != value:
                worker.wrong.append(f"{key}: wrote {value!r}, read {got!r}")
        worker.socket_changed = (
            client.connection is None or client.connection._sock is not first_socket
        )
    finally:
        client.close()


@pytest.fixture
def five_servers() -> Iterator[list[RedisServer]]:
    with start_redis_servers(5) as servers:
        yield servers


def _wait_for_ring(
    sidecar: Sidecar, servers: list[RedisServer], old: list[str], new: list[str]
) -> None:
    """Until keys that change owner between the two rings land on their new owner."""
    old_ring = classic_ring([Shard(a) for a in old])
    new_ring = classic_ring([Shard(a) for a in new])
    by_address = {s.address: s for s in servers}
    moved: dict[str, list[str]] = {}
    for i in range(5000):
        key = f"probe:{i}"
        owner = new_ring.shard_for(key.encode())
        if owner != old_ring.shard_for(key.encode()):
            moved.setdefault(owner, []).append(key)
    probes = {owner: keys[:5] for owner, keys in moved.items()}
    deadline = time.monotonic() + RELOAD_TIMEOUT
    with sidecar.client(protocol=2) as client:
        while time.monotonic() < deadline:
            for keys in probes.values():
                for key in keys:
                    client.set(key, "1")
            landed = 0
            for owner, keys in probes.items():
                with by_address[owner].client() as direct:
                    landed += direct.exists(*keys)
            if landed == sum(len(keys) for keys in probes.values()):
                return
            time.sleep(0.05)
    raise AssertionError(f"the sidecar did not apply the ring {new} within {RELOAD_TIMEOUT}s")


def _assert_routed_by(
    sidecar: Sidecar,
    servers: list[RedisServer],
    ring_shards: list[str],
    prefix: str,
    client: redis.Redis | None = None,
) -> None:
    """Keys written through the sidecar (by ``client``, else a new connection) now sit on the
    owner the ring of ``ring_shards`` names."""
    ring = classic_ring([Shard(a) for a in ring_shards])
    by_address = {s.address: s for s in servers}
    keys = [f"{prefix}:{i}".encode() for i in range(100)]
    with contextlib.nullcontext(client) if client else sidecar.client(protocol=2) as writer:
        for key in keys:
            writer.set(key, "x")
    for key in keys:
        with by_address[ring.shard_for(key)].client() as owner:
            assert owner.exists(key) == 1, f"{key!r} is not on {ring.shard_for(key)}"


REJECTED = re.compile(r'^\S*config_reload\S*\{[^}]*"rejected"[^}]*\}\s+(\S+)', re.MULTILINE)


def _rejections(sidecar: Sidecar) -> float | None:
    """The sidecar's count of rejected reloads, if its metrics have one."""
    match = REJECTED.search(sidecar.metrics())
    return float(match.group(1)) if match else None


def _wait_for_rejection(sidecar: Sidecar, before: float | None, timeout: float = 10.0) -> None:
    if before is None:
        time.sleep(2.5)  # no counter to watch: give a polling watcher two chances to see it
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _rejections(sidecar)
        if now is not None and now > before:
            return
        time.sleep(0.05)
    raise AssertionError(f"the sidecar did not report rejecting the file within {timeout}s")


def test_reload_under_load_loses_nothing(five_servers: list[RedisServer]) -> None:
    four = [s.address for s in five_servers[:4]]
    config = sidecar_config(four, config_version="1")
    with start_sidecar(config=config) as sidecar:
        assert sidecar.config_path is not None
        # A connection that stays open and idle across the reloads: its next requests must
        # take the new ring (its fast path was armed with the first route table).
        idle = sidecar.client(protocol=2, single_connection_client=True)
        idle.set("armed", "1")
        stop = threading.Event()
        workers = [Worker(n, protocol=2 if n % 2 else 3) for n in range(WORKERS)]
        threads = [
            threading.Thread(target=_hammer, args=(sidecar.port, w, stop), daemon=True)
            for w in workers
        ]
        for thread in threads:
            thread.start()
        # Grow to five shards, then retire the first one, all under load.
        rings = [four, [s.address for s in five_servers], [s.address for s in five_servers[1:]]]
        counts = []
        try:
            time.sleep(0.8)
            for version, (old, new) in enumerate(pairwise(rings), start=2):
                counts.append(sum(w.operations for w in workers))
                new_config = sidecar_config(
                    new,
                    listen_port=sidecar.port,
                    admin_port=sidecar.admin_port,
                    config_version=str(version),
                )
                write_config(sidecar.config_path, new_config)
                _wait_for_ring(sidecar, five_servers, old, new)
                time.sleep(0.8)
            counts.append(sum(w.operations for w in workers))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert all(not t.is_alive() for t in threads), "a client hung"
        steps = [b - a for a, b in pairwise([0, *counts])]
        assert all(step > 100 for step in steps), f"too little load between reloads: {counts}"
        for worker in workers:
            assert not worker.errors, f"worker {worker.number} failed: {worker.errors[:3]}"
            assert not worker.wrong, f"worker {worker.number} read wrong values: {worker.wrong[:3]}"
            assert not worker.socket_changed, f"worker {worker.number} had to reconnect"
            # At most one SET/GET pair per reload can straddle it (the GET then misses).
            assert worker.misses <= 2, f"worker {worker.number}: {worker.misses} misses"
        assert sidecar.alive()
        assert 'version="3"' in sidecar.metrics(), "metrics should report config version 3"

        # The last ring routes everything now: fresh keys sit where it says.
        _assert_routed_by(sidecar, five_servers, rings[-1], "after")
        _assert_routed_by(sidecar, five_servers, rings[-1], "idle", client=idle)
        idle.close()


def test_invalid_config_is_rejected_and_old_one_keeps_serving(
    five_servers: list[RedisServer],
) -> None:
    four = [s.address for s in five_servers[:4]]
    with start_sidecar(config=sidecar_config(four)) as sidecar:
        assert sidecar.config_path is not None
        with sidecar.client(protocol=2, single_connection_client=True) as client:
            client.set("before", "1")
            for bad in ['{"schemaVersion": 1, "shards": []', '{"schemaVersion": 99}', "[]"]:
                rejected = _rejections(sidecar)
                sidecar.config_path.write_text(bad)
                _wait_for_rejection(sidecar, rejected)
                assert sidecar.alive(), f"the sidecar died on config {bad!r}"
                assert client.get("before") == b"1"
                assert sidecar.ready()
        _assert_routed_by(sidecar, five_servers, four, "still-old")
