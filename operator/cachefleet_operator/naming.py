"""Names of shards and of every child object, in one place so they never drift apart.

A shard's ring name is ``shard-<n>`` and never changes: StatefulSet ``<cluster>-shard-<n>`` and
its headless Service of the same name. Removing shard-1 of four leaves shard-0, shard-2 and
shard-3 exactly as they were (the set of names lives in the ring in status), and the next shard
added takes the lowest free number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cachefleet_operator.api.parse import SHARD_NAME

# StatefulSet pods carry a controller-revision-hash label "<sts>-<10 chars>", which must fit
# in 63 characters: 52 for the StatefulSet name, minus "-shard-NNNNNN" (13) leaves 39.
MAX_CLUSTER_NAME = 39
# Service names must be DNS-1035 labels, so the CacheCluster's name must be one too.
CLUSTER_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


def cluster_name_problem(name: str) -> str | None:
    if len(name) > MAX_CLUSTER_NAME:
        return (
            f"metadata.name: {len(name)} characters, at most {MAX_CLUSTER_NAME} "
            "(shard StatefulSet names must fit Kubernetes' limits)"
        )
    if not re.match(CLUSTER_NAME_PATTERN, name):
        return (
            f"metadata.name: {name!r} must be lowercase letters, digits and '-', starting "
            "with a letter (it names Services)"
        )
    return None


def shard_name(number: int) -> str:
    return f"shard-{number}"


def shard_number(name: str) -> int:
    if not SHARD_NAME.match(name):
        raise ValueError(f"{name!r} is not a shard name")
    return int(name.removeprefix("shard-"))


def shard_names_for(current: Iterable[str], count: int) -> list[str]:
    """``count`` shard names: keep ``current``, add the lowest free numbers or drop the highest."""
    numbers = sorted(shard_number(name) for name in current)
    if count < len(numbers):
        numbers = numbers[:count]
    else:
        taken = set(numbers)
        candidate = 0
        while len(numbers) < count:
            if candidate not in taken:
                numbers.append(candidate)
            candidate += 1
        numbers.sort()
    return [shard_name(n) for n in numbers]


def shard_workload(cluster: str, shard: str) -> str:
    """StatefulSet and headless Service of one shard."""
    return f"{cluster}-{shard}"


def shard_address(cluster: str, shard: str, namespace: str, port: int = 6379) -> str:
    workload = shard_workload(cluster, shard)
    return f"{workload}-0.{workload}.{namespace}.svc:{port}"


def gutter_workload(cluster: str) -> str:
    return f"{cluster}-gutter"


def gutter_member(index: int) -> str:
    return f"gutter-{index}"


def gutter_address(cluster: str, index: int, namespace: str, port: int = 6379) -> str:
    workload = gutter_workload(cluster)
    return f"{workload}-{index}.{workload}.{namespace}.svc:{port}"


def redis_config(cluster: str) -> str:
    return f"{cluster}-redis"


def sidecar_config(cluster: str) -> str:
    return f"{cluster}-sidecar"


def auth_secret(cluster: str) -> str:
    return f"{cluster}-auth"


def shards_budget(cluster: str) -> str:
    return f"{cluster}-shards"


def gutter_budget(cluster: str) -> str:
    return f"{cluster}-gutter"
