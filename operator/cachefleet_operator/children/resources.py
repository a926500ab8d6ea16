"""Containers' resources: the user's requests over the operator's defaults, and Redis sizes.

Every request the user leaves out gets the operator's default; limits are only the user's.
"""

from __future__ import annotations

import math
import re
from typing import Any

from cachefleet_operator.api.spec import REDIS_MEMORY_PATTERN, Resources

_REDIS_MEMORY = re.compile(REDIS_MEMORY_PATTERN)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}
_MI = 1024**2


def container_resources(defaults: dict[str, Any], given: Resources | None) -> dict[str, Any]:
    """``resources`` of a container: ``defaults`` under the requests ``given``, its limits."""
    requests = {**defaults, **(given.requests if given is not None else {})}
    result: dict[str, Any] = {"requests": dict(sorted(requests.items()))}
    if given is not None and given.limits:
        result["limits"] = dict(sorted(given.limits.items()))
    return result


def redis_memory_bytes(value: str) -> int:
    """redis.conf memory units (``256mb``, ``1gb``, ``512k``, bytes) in bytes."""
    match = _REDIS_MEMORY.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a redis.conf memory size")
    unit = match.group(1) or ""
    return int(value[: len(value) - len(unit)]) * _UNITS[unit.lower()]


def redis_memory_request(maxmemory: str) -> str:
    """A memory request for a Redis with this maxmemory: 125%, in whole MiB, at least 32Mi."""
    mebibytes = math.ceil(redis_memory_bytes(maxmemory) * 1.25 / _MI)
    return f"{max(32, mebibytes)}Mi"
