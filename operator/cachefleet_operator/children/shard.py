"""One shard: a Redis StatefulSet (primary plus optional replicas) and its headless Service."""

from __future__ import annotations

from cachefleet_operator.children.context import RenderContext
from cachefleet_operator.children.redis_config import SHARD_KEY, shard_conf
from cachefleet_operator.children.redis_workload import headless_service, redis_statefulset
from cachefleet_operator.manifest_hash import content_hash
from cachefleet_operator.naming import shard_workload
from cachefleet_operator.plan import Manifest

ROLE = "shard"


def shard_children(context: RenderContext, shard: str) -> list[Manifest]:
    name = shard_workload(context.name, shard)
    statefulset = redis_statefulset(
        context,
        name=name,
        role=ROLE,
        shard=shard,
        replicas=1 + context.spec.replicas_per_shard,
        config_key=SHARD_KEY,
        config_hash=content_hash(shard_conf(context)),
        spread=True,
    )
    return [statefulset, headless_service(context, name, ROLE, shard)]
