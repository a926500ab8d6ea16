"""Shard failures through a real sidecar process and real redis-servers: ejection, the gutter,
and nothing stale after recovery. Runs in both builds (``make test`` runs this suite again with
``CACHEFLEET_PURE_PYTHON=1``).

Four shards and one gutter member; health checks every 200 ms so each test takes seconds.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from cachefleet.config import GutterConfig, HealthConfig, PoolConfig, ShardEndpoint, SidecarConfig
from cachefleet.ring import Ring

from tests.support import RedisServer, Sidecar, sidecar_config, start_redis_servers, start_sidecar
from tests.support.redis_servers import restart_redis
from tests.support.relay import relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHECK_MS = 200
TIMEOUT_MS = 500
GUTTER_TTL = 10


@dataclass
class Fleet:
    shards: list[RedisServer]
    gutter: RedisServer

    def config(
        self,
        addresses: list[str] | None = None,
        gutter: bool = True,
        **health: Any,
    ) -> SidecarConfig:
        """A sidecar config over the shards (or stand-ins at ``addresses``, same names)."""
        base = sidecar_config([s.address for s in self.shards])
        shards = base.shards
        if addresses is not None:
            shards = [
                ShardEndpoint(name=s.name, address=a)
                for s, a in zip(shards, addresses, strict=True)
            ]
        return base.model_copy(
            update={
                "shards": shards,
                "pool": PoolConfig(request_timeout_ms=TIMEOUT_MS),
                "gutter": GutterConfig(
                    enabled=gutter,
                    ttl_seconds=GUTTER_TTL,
                    shards=[ShardEndpoint(name="gutter-0", address=self.gutter.address)],
                ),
                "health": HealthConfig(check_interval_ms=CHECK_MS, **health),
            }
        )

    def ring(self, config: SidecarConfig) -> Ring:
        return config.ring.to_ring()


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with start_redis_servers(5) as servers:
        yield Fleet(servers[:4], servers[4])


def keys_of(ring: Ring, shard: str, count: int, prefix: str = "k") -> list[str]:
    found = []
    i = 0
    while len(found) < count:
        key = f"{prefix}:{i}"
        if ring.shard_for(key.encode()) == shard:
            found.append(key)
        i += 1
    return found


def shards_report(sidecar: Sidecar) -> dict[str, dict[str, Any]]:
    status, body = sidecar.admin_get("/shards")
    assert status == 200, body
    return {entry["name"]: entry for entry in json.loads(body)["shards"]}


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Seconds until ``check`` holds; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def state_of(sidecar: Sidecar, shard: str) -> str:
    return str(shards_report(sidecar)[shard]["state"])


def metric(sidecar: Sidecar, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry these label values."""
    total = 0.0
    wanted = [f'{label}="{value}"' for label, value in labels.items()]
    for line in sidecar.metrics().splitlines():
        if line.startswith((name + "{", name + " ")) and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Load:
    """Steady SET/GET traffic on keys of every shard, in a thread; failures with their times."""

    sidecar: Sidecar
    keys: list[str]
    failures: list[tuple[float, str]] = field(default_factory=list)
    done: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        client = self.sidecar.client(protocol=2, socket_timeout=5)
        i = 0
        while not self.stopping.is_set():
            key = self.keys[i % len(self.keys)]
            try:
                client.set(key, i)
                client.get(key)
                self.done += 2
            except redis.RedisError as error:
                self.failures.append((time.monotonic(), str(error)))
                time.sleep(0.005)
            i += 1
        client.close()


@contextlib.contextmanager
def load(sidecar: Sidecar, keys: list[str]) -> Iterator[Load]:
    running = Load(sidecar, keys)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.stopping.set()
        thread.join(10)


def test_a_killed_shard_is_served_by_the_gutter_and_comes_back_empty(fleet: Fleet) -> None:
    config = fleet.config()
    ring = fleet.ring(config)
    victim = fleet.shards[0].address
    mine = keys_of(ring, victim, 20)
    others = [k for s in fleet.shards[1:] for k in keys_of(ring, s.address, 5)]
    with start_sidecar(config=config) as sidecar:
        client = sidecar.client(protocol=2)
        for key in mine + others:
            client.set(key, "before")
        with load(sidecar, mine + others) as traffic:
            time.sleep(0.3)
            fault = time.monotonic()
            fleet.shards[0].process.kill()
            wait_for("ejected", lambda: state_of(sidecar, victim) == "ejected", 2.0)
            time.sleep(0.5)
            window = max((t for t, _ in traffic.failures), default=fault) - fault
        assert window <= 1.0, (
            f"errors went on for {window:.2f} s after the kill: {traffic.failures}"
        )
        # Its keys are on the gutter now, each with a short TTL; the others are untouched.
        for key in mine:
            assert client.set(key, "during")
            assert client.get(key) == b"during"
        with fleet.gutter.client() as gutter:
            for key in mine:
                assert 0 < gutter.ttl(key) <= GUTTER_TTL
            assert gutter.get(others[0]) is None
        assert [client.get(k) for k in others] != [None] * len(others)
        assert metric(sidecar, "cachefleet_sidecar_route_requests_total", route="gutter") > 0
        ejections = metric(sidecar, "cachefleet_sidecar_ejections_total", shard=victim)
        assert ejections == metric(
            sidecar, "cachefleet_sidecar_ejections_total", shard=victim, cause="connection"
        )
        assert ejections >= 1
        restart_redis(fleet.shards[0])
        wait_for("re-admitted", lambda: state_of(sidecar, victim) == "healthy", 15.0)
        # Back empty: a miss, never the gutter's copy or a value from before.
        assert [client.get(k) for k in mine] == [None] * len(mine)
        assert client.set(mine[0], "after") and client.get(mine[0]) == b"after"
        with fleet.shards[0].client() as shard:
            assert shard.get(mine[0]) == b"after"
        client.close()


def test_a_stopped_shard_is_ejected_within_the_request_timeout(fleet: Fleet) -> None:
    config = fleet.config()
    ring = fleet.ring(config)
    victim = fleet.shards[1]
    mine = keys_of(ring, victim.address, 40)
    with start_sidecar(config=config) as sidecar:
        client = sidecar.client(protocol=2, socket_timeout=5)
        for key in mine:
            client.set(key, "old")
        victim.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        # A read in flight to the stopped shard is answered within the timeout: retried once
        # on the gutter (a miss there) or an error, never left hanging.
        try:
            value = client.get(mine[0])
        except redis.ResponseError as error:
            value = str(error).encode()
        answered = time.monotonic() - started
        assert answered <= TIMEOUT_MS / 1000 + 0.5, f"answered after {answered:.2f} s: {value!r}"
        assert value != b"old"
        ejected = started + wait_for(
            "ejected", lambda: state_of(sidecar, victim.address) == "ejected", 3.0
        )
        assert ejected - started <= TIMEOUT_MS / 1000 + 0.5
        for key in mine[0::2]:
            assert client.set(key, "new")
        assert client.delete(*mine[1::2]) == 0  # deleted on the gutter, where they are not
        victim.process.send_signal(signal.SIGCONT)  # back with every old value
        wait_for("re-admitted", lambda: state_of(sidecar, victim.address) == "healthy", 15.0)
        values = {key: client.get(key) for key in mine}
        assert b"old" not in values.values(), values
        client.close()


def test_a_slow_shard_is_ejected_as_gray_and_its_neighbours_are_not(fleet: Fleet) -> None:
    slow = fleet.shards[2]
    with relay(slow.port, delay=0.08) as delayed:
        addresses = [s.address for s in fleet.shards]
        addresses[2] = delayed.address
        config = fleet.config(addresses, slow_threshold_ms=40)
        ring = fleet.ring(config)
        keys = [k for s in fleet.shards for k in keys_of(ring, s.address, 10)]
        with start_sidecar(config=config) as sidecar, load(sidecar, keys):
            wait_for("slow shard ejected", lambda: state_of(sidecar, slow.address) == "ejected")
            report = shards_report(sidecar)
            assert "slow" in str(report[slow.address]["reason"])
            assert metric(sidecar, "cachefleet_sidecar_ejections_total", cause="slow") == 1
            assert metric(sidecar, "cachefleet_sidecar_ejections_total") == 1
            time.sleep(1.0)  # the others stay in
            report = shards_report(sidecar)
            for shard in fleet.shards:
                if shard is not slow:
                    assert report[shard.address]["state"] == "healthy", report
            assert report[slow.address]["state"] == "ejected"


def test_two_sidecars_never_read_an_old_value_after_recovery(fleet: Fleet) -> None:
    victim = fleet.shards[3]
    config_a = fleet.config()
    ring = fleet.ring(config_a)
    mine = keys_of(ring, victim.address, 80)
    config_b = sidecar_config([s.address for s in fleet.shards])
    config_b = config_a.model_copy(
        update={"listen": config_b.listen, "admin_listen": config_b.admin_listen}
    )
    with start_sidecar(config=config_a) as a, start_sidecar(config=config_b) as b:
        client_a, client_b = a.client(protocol=2), b.client(protocol=3)
        for key in mine:
            client_a.set(key, "old")
        victim.process.send_signal(signal.SIGSTOP)
        for sidecar in (a, b):
            wait_for("ejected", lambda s=sidecar: state_of(s, victim.address) == "ejected", 5.0)
        # Each sidecar overwrites a quarter and deletes a quarter, on the gutter.
        for key in mine[0::4]:
            client_a.set(key, "new")
        client_a.delete(*mine[1::4])
        for key in mine[2::4]:
            client_b.set(key, "new")
        client_b.delete(*mine[3::4])
        victim.process.send_signal(signal.SIGCONT)
        for sidecar in (a, b):
            wait_for("healthy", lambda s=sidecar: state_of(s, victim.address) == "healthy", 20.0)
        for client in (client_a, client_b):
            values = {key: client.get(key) for key in mine}
            assert b"old" not in values.values(), values
        client_a.close()
        client_b.close()


def test_a_gutter_restart_during_an_outage_flushes_the_returning_shard(fleet: Fleet) -> None:
    """The journal died with the gutter member: the shard cannot be cleaned key by key."""
    config = fleet.config()
    ring = fleet.ring(config)
    victim = fleet.shards[2]
    mine = keys_of(ring, victim.address, 20)
    with start_sidecar(config=config) as sidecar:
        client = sidecar.client(protocol=2)
        for key in mine:
            client.set(key, "old")
        time.sleep(3 * CHECK_MS / 1000)  # a journal poll has seen the gutter's run_id
        victim.process.send_signal(signal.SIGSTOP)
        wait_for("ejected", lambda: state_of(sidecar, victim.address) == "ejected", 3.0)
        for key in mine:
            assert client.set(key, "new")
        fleet.gutter.process.kill()
        restart_redis(fleet.gutter)
        victim.process.send_signal(signal.SIGCONT)
        wait_for("re-admitted", lambda: state_of(sidecar, victim.address) == "healthy", 20.0)
        assert [client.get(k) for k in mine] == [None] * len(mine)
        assert victim.app_keys() == 0
        assert "gutter member restarted" in sidecar.log.read_text()
        client.close()


def test_a_partitioned_sidecar_cannot_make_another_read_old_values_for_long(fleet: Fleet) -> None:
    """Only B loses the shard (a cut relay); A keeps it. A write through B goes to the gutter;
    A must stop reading the shard's old value within about one check interval (the journal
    poll). The window is measured and reported."""
    victim = fleet.shards[0]
    config_a = fleet.config()
    ring = fleet.ring(config_a)
    key = keys_of(ring, victim.address, 1)[0]
    with relay(victim.port) as link:
        addresses = [s.address for s in fleet.shards]
        addresses[0] = link.address
        other = sidecar_config([s.address for s in fleet.shards])
        config_b = fleet.config(addresses).model_copy(
            update={"listen": other.listen, "admin_listen": other.admin_listen}
        )
        with start_sidecar(config=config_a) as a, start_sidecar(config=config_b) as b:
            client_a, client_b = a.client(protocol=2), b.client(protocol=2)
            client_a.set(key, "old")
            link.cut()
            wait_for("B ejects", lambda: state_of(b, victim.address) == "ejected", 5.0)
            assert state_of(a, victim.address) == "healthy"
            assert client_b.set(key, "new")
            window = wait_for("A stops reading the old value", lambda: client_a.get(key) != b"old")
            print(f"cross-sidecar stale window: {window * 1000:.0f} ms")
            assert window <= 3 * CHECK_MS / 1000 + 0.5, window
            client_a.close()
            client_b.close()


def test_gutter_down_too_fails_fast_with_one_clear_error(fleet: Fleet) -> None:
    config = fleet.config()
    ring = fleet.ring(config)
    victim = fleet.shards[0]
    key = keys_of(ring, victim.address, 1)[0]
    with start_sidecar(config=config) as sidecar:
        client = sidecar.client(protocol=2)
        fleet.gutter.process.kill()
        victim.process.kill()
        wait_for("ejected", lambda: state_of(sidecar, victim.address) == "ejected", 3.0)
        time.sleep(0.2)  # the gutter connection has seen its server go
        started = time.monotonic()
        with pytest.raises(redis.ResponseError) as error:
            client.get(key)
        assert time.monotonic() - started < 0.25
        message = str(error.value)
        assert victim.address in message and "gutter-0" in message, message
        client.close()


def test_no_more_shards_than_the_cap_are_ejected(fleet: Fleet) -> None:
    config = fleet.config()  # 50% of 4 shards: 2 may be out
    ring = fleet.ring(config)
    with start_sidecar(config=config) as sidecar:
        client = sidecar.client(protocol=2)
        for shard in fleet.shards[:3]:
            shard.process.kill()

        def settled() -> bool:
            states = [state_of(sidecar, s.address) for s in fleet.shards[:3]]
            return sorted(states) == ["ejected", "ejected", "failing"]

        wait_for("two ejected, one failing", settled, 5.0)
        report = shards_report(sidecar)
        failing = next(name for name, e in report.items() if e["state"] == "failing")
        assert "cap is 50%" in str(report[failing]["reason"])
        ejected = next(name for name, e in report.items() if e["state"] == "ejected")
        assert client.set(keys_of(ring, ejected, 1)[0], "x")  # on the gutter
        started = time.monotonic()
        with pytest.raises(redis.ResponseError, match="unavailable"):
            client.get(keys_of(ring, failing, 1)[0])
        assert time.monotonic() - started < 0.25
        client.close()
