"""A short-lived redis-py client to one shard, for the operator's few direct looks at shards
(the warm-up's counters, the sidecars' heartbeats, the leftover sweep)."""

from __future__ import annotations

from typing import Any


def shard_client(address: str, password: str | None, timeout: float) -> Any:
    """A client to ``address`` (HOST:PORT) whose every call gives up after ``timeout`` s, so a
    hung shard costs a reconcile turn that long at most. The caller closes it."""
    import redis  # the operator image has it; imported here so the pure planner does not need it

    host, _, port = address.rpartition(":")
    return redis.Redis(
        host=host,
        port=int(port),
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
