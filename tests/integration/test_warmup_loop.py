"""The capacity-change loop end to end: the operator's reconcile() (run by LocalFleet, with no
Kubernetes), the real sidecar and real redis-server processes carry 4 -> 5 and 5 -> 4 from
Shadowing to Stable on the hit ratio the sidecars measure, under a read-through workload, with
no timeout cut-over and no stale read. Runs in both builds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from cachefleet_operator.local import LocalFleet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

KEYS = 3000


def manifest(shards: int) -> dict[str, object]:
    return {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "CacheCluster",
        "metadata": {"name": "loop"},
        "spec": {
            "shards": shards,
            "warmUp": {
                "steps": [10, 50, 100],
                "stepSeconds": 2,
                "cutoverHitRatio": 0.9,
                "graceSeconds": 3,
                "timeoutSeconds": 600,  # far away: only the measured ratio may cut over
            },
        },
    }


@dataclass
class ReadThrough:
    """A cache in front of a 'database' (a dict): GET; on a miss load it (counted) and SET it
    with a TTL; now and then the database changes and the cached key is deleted."""

    port: int
    database: dict[str, str] = field(default_factory=dict)
    loads: int = 0
    reads: int = 0
    stale: list[tuple[str, bytes, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(11)
        weights = [1 / (rank + 1) ** 1.1 for rank in range(KEYS)]
        client = redis.Redis(port=self.port, protocol=2, socket_timeout=5)
        while not self.stopping.is_set():
            key = f"item:{rng.choices(range(KEYS), weights)[0]}"
            try:
                if rng.random() < 0.03:
                    self.database[key] = f"v{rng.random()}"
                    client.delete(key)
                    continue
                self.reads += 1
                value = client.get(key)
                truth = self.database.setdefault(key, f"v-{key}")
                if value is None:
                    self.loads += 1
                    client.set(key, truth, ex=600)
                elif value.decode() != truth:
                    self.stale.append((key, value, truth))
            except redis.RedisError as error:
                self.errors.append(str(error))
                time.sleep(0.01)
        client.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    from tests.support import free_port

    local = LocalFleet(
        manifest(4), tmp_path / "fleet", sidecar_port=free_port(), admin_port=free_port()
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()


def change(fleet: LocalFleet, shards: int) -> list[str]:
    before = len(fleet.events)
    fleet.scale(shards)
    fleet.run(lambda: fleet.phase == "Stable" and fleet.status.get("shards") == shards, 240)
    return [f"{e.reason}: {e.message}" for e in fleet.events[before:]]


def test_capacity_changes_cut_over_on_the_measured_hit_ratio(fleet: LocalFleet) -> None:
    fleet.run(lambda: fleet.phase == "Stable" and fleet.sidecar is not None, 60)
    workload = ReadThrough(fleet.sidecar_port)
    thread = threading.Thread(target=workload.run, daemon=True)
    thread.start()
    try:
        time.sleep(3)  # steady state: most reads hit
        for shards in (5, 4):
            events = change(fleet, shards)
            print("\n".join(events))
            cutovers = [e for e in events if e.startswith("CutOver")]
            assert len(cutovers) == 1 and "hit ratio" in cutovers[0], events
            assert not any(e.startswith("CutOverTimeout") for e in events), events
            assert any(e.startswith("WarmUpComplete") for e in events), events
            # Draining waited for the sidecar to run its config, not for the 120 s bound.
            assert any(e.startswith("Draining") for e in events), events
            assert not any(e.startswith("SidecarsLagging") for e in events), events
            time.sleep(1)
    finally:
        workload.stopping.set()
        thread.join(10)
    assert workload.stale == [], workload.stale[:5]
    assert not workload.errors, workload.errors[:5]
    assert workload.reads > 1000
    # The removed shard's process is gone, the others serve.
    assert sorted(fleet.redis) == ["gutter-0", "shard-0", "shard-1", "shard-2", "shard-3"]
