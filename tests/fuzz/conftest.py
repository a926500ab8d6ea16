"""A sidecar with a small request cap (1 MiB) in front of 4 real shards, for abuse."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cachefleet.config import LimitsConfig

from tests.support import (
    RedisServer,
    Sidecar,
    sidecar_config,
    start_redis_servers,
    start_sidecar,
)
from tests.support.resp import RawConnection

CAP = 1 << 20


@pytest.fixture(scope="module")
def shards() -> Iterator[list[RedisServer]]:
    with start_redis_servers(4) as servers:
        yield servers


# One sidecar per test, so a test that hangs or kills it does not take the next ones down too.
@pytest.fixture
def sidecar(shards: list[RedisServer]) -> Iterator[Sidecar]:
    config = sidecar_config([s.address for s in shards], limits=LimitsConfig(max_request_bytes=CAP))
    with start_sidecar(config=config) as running:
        yield running
        # Whatever the test threw at it, it still serves a fresh connection.
        assert running.alive(), "the sidecar crashed"
        with RawConnection(running.port) as fresh:
            assert fresh.call("PING") == b"+PONG\r\n"
