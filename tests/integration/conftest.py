"""Fixtures with real processes: four redis-server shards, a plain Redis to compare with, and
the sidecar in front of the shards.

The processes live for the whole session (starting them is most of the cost); each test gets
them flushed. ``CACHEFLEET_PROXY_UNDER_TEST=redis`` puts a plain redis-server where the sidecar
would be, to check the harness itself (placement and admin tests then fail, as they should).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cachefleet.ring import Ring, Shard, classic_ring

from tests.support import RedisServer, start_redis_servers, start_sidecar

SHARD_COUNT = 4


@dataclass
class Fleet:
    shards: list[RedisServer]
    reference: RedisServer
    proxy: Any  # a Sidecar (or a RedisServer when checking the harness itself)

    @property
    def addresses(self) -> list[str]:
        return [shard.address for shard in self.shards]

    def ring(self) -> Ring:
        """The ring ``--shards`` builds: classic, shards named by their addresses."""
        return classic_ring([Shard(address) for address in self.addresses])

    def flush(self) -> None:
        for server in [*self.shards, self.reference]:
            with server.client() as client:
                client.flushall()


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    with start_redis_servers(SHARD_COUNT + 1) as servers:
        shards, reference = servers[:SHARD_COUNT], servers[SHARD_COUNT]
        if os.environ.get("CACHEFLEET_PROXY_UNDER_TEST") == "redis":
            yield Fleet(shards[:1], reference, shards[0])
            return
        with start_sidecar([shard.address for shard in shards]) as sidecar:
            yield Fleet(shards, reference, sidecar)


@pytest.fixture
def clean_fleet(fleet: Fleet) -> Fleet:
    # One crash would otherwise show up as a confusing failure in every later test.
    alive = getattr(fleet.proxy, "alive", lambda: True)
    assert alive(), f"the sidecar is dead; its log: {getattr(fleet.proxy, 'log', '?')}"
    fleet.flush()
    return fleet
