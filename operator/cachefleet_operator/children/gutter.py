"""The gutter pool: a few spare Redis servers that take a failed shard's traffic briefly."""

from __future__ import annotations

from cachefleet_operator.children.context import RenderContext
from cachefleet_operator.children.redis_config import GUTTER_KEY, gutter_conf
from cachefleet_operator.children.redis_workload import headless_service, redis_statefulset
from cachefleet_operator.manifest_hash import content_hash
from cachefleet_operator.naming import gutter_workload
from cachefleet_operator.plan import Manifest

ROLE = "gutter"


def gutter_children(context: RenderContext) -> list[Manifest]:
    gutter = context.spec.gutter
    if not gutter.enabled:
        return []
    name = gutter_workload(context.name)
    statefulset = redis_statefulset(
        context,
        name=name,
        role=ROLE,
        shard=None,
        replicas=gutter.size,
        config_key=GUTTER_KEY,
        config_hash=content_hash(gutter_conf(context)),
        # Spread among themselves too: one node failing must not take the whole gutter.
        spread=True,
    )
    return [statefulset, headless_service(context, name, ROLE, None)]
