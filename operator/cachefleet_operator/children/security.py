"""What every container the operator runs or injects gets: the restricted security context.

Non-root, no privilege escalation, every capability dropped, a read-only root filesystem (the
writable paths are volumes), seccomp RuntimeDefault: the Pod Security Standards' "restricted"
profile, so the fleet runs in namespaces that enforce it.
"""

from __future__ import annotations

import math
import re
from typing import Any

_REDIS_MEMORY = re.compile(r"^([0-9]+)([kKmMgG][bB]?|[bB])?$")
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


def restricted_container(run_as_user: int | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as_user is not None:
        context["runAsUser"] = run_as_user
        context["runAsGroup"] = run_as_user
    return context


def redis_memory_bytes(value: str) -> int:
    """redis.conf memory units (``256mb``, ``1gb``, ``512k``, bytes) in bytes."""
    match = _REDIS_MEMORY.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a redis.conf memory size")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def redis_memory_request(maxmemory: str) -> str:
    """A memory request for a Redis with this maxmemory: 125%, in whole MiB, at least 32Mi."""
    mebibytes = math.ceil(redis_memory_bytes(maxmemory) * 1.25 / _MI)
    return f"{max(32, mebibytes)}Mi"
