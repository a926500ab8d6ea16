"""The redis.conf of the shards and of the gutter servers, in one ConfigMap."""

from __future__ import annotations

from cachefleet_operator.children.context import REDIS_PORT, RenderContext
from cachefleet_operator.labels import metadata
from cachefleet_operator.naming import redis_config
from cachefleet_operator.plan import Manifest

SHARD_KEY = "shard.conf"
GUTTER_KEY = "gutter.conf"
# RDB snapshots as Redis ships them, when persistence is on; off, a restarted shard starts empty.
SNAPSHOT_SCHEDULE = "3600 1 300 100 60 10000"


def shard_conf(context: RenderContext) -> str:
    spec = context.spec
    lines = [
        f"port {REDIS_PORT}",
        "bind * -::*",
        "protected-mode no",
        "dir /data",
        f"maxmemory {spec.redis.maxmemory}",
        f"maxmemory-policy {spec.redis.eviction_policy}",
        "appendonly no",
        f'save "{SNAPSHOT_SCHEDULE}"' if spec.persistence.enabled else 'save ""',
    ]
    lines += [f"{key} {value}" for key, value in sorted(spec.redis.extra_config.items())]
    return "\n".join(lines) + "\n"


def gutter_conf(context: RenderContext) -> str:
    gutter = context.spec.gutter
    # Gutter entries are short-lived by design (the sidecar sets their TTL): evict anything.
    lines = [
        f"port {REDIS_PORT}",
        "bind * -::*",
        "protected-mode no",
        "dir /data",
        f"maxmemory {gutter.maxmemory}",
        "maxmemory-policy allkeys-lru",
        "appendonly no",
        'save ""',
    ]
    return "\n".join(lines) + "\n"


def redis_config_map(context: RenderContext) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(context.owner, redis_config(context.name), "redis-config"),
        "data": {SHARD_KEY: shard_conf(context), GUTTER_KEY: gutter_conf(context)},
    }
