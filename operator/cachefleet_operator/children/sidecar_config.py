"""The sidecar's ConfigMap, rendered with the data plane's own schema so the two cannot disagree.

Shards are addressed by their stable DNS names (pod 0 of each shard's StatefulSet through its
headless Service), so a rescheduled pod keeps its address and the ConfigMap need not change.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachefleet.config import (
    AuthConfig,
    GutterConfig,
    HealthConfig,
    HotKeysConfig,
    L1Config,
    PoolConfig,
    ShardEndpoint,
    SidecarConfig,
    WarmupConfig,
)
from cachefleet.ring import RingAssignment

from cachefleet_operator.children.context import REDIS_PORT, RenderContext
from cachefleet_operator.labels import metadata
from cachefleet_operator.manifest_hash import content_hash
from cachefleet_operator.naming import (
    gutter_address,
    gutter_member,
    shard_address,
    sidecar_config,
)
from cachefleet_operator.plan import Manifest

CONFIG_KEY = "sidecar.json"
# Where the injected sidecar finds the shards' password (the auth Secret mounted as a volume).
PASSWORD_DIR = "/etc/cachefleet/auth"
PASSWORD_FILE = f"{PASSWORD_DIR}/password"
# Annotations that tell the injector what to mount next to the ConfigMap.
AUTH_SECRET_ANNOTATION = "cachefleet.io/auth-secret"
AUTH_SECRET_KEY_ANNOTATION = "cachefleet.io/auth-secret-key"
SIDECAR_IMAGE_ANNOTATION = "cachefleet.io/sidecar-image"


@dataclass(frozen=True)
class Routing:
    """What the sidecars route by right now: the ring, and the warm-up section if any."""

    ring: RingAssignment
    ring_version: int
    warmup: WarmupConfig | None = None


def sidecar_settings(context: RenderContext, routing: Routing) -> SidecarConfig:
    spec = context.spec
    names: list[str] = []
    rings = [routing.ring]
    if routing.warmup is not None:
        rings += [r for r in (routing.warmup.next_ring, routing.warmup.previous_ring) if r]
    for ring in rings:
        names += [s.name for s in ring.shards if s.name not in names]
    names.sort(key=lambda n: int(n.removeprefix("shard-")))
    shards = [
        ShardEndpoint(name=n, address=shard_address(context.name, n, context.namespace, REDIS_PORT))
        for n in names
    ]
    gutter = GutterConfig()
    if spec.gutter.enabled:
        gutter = GutterConfig(
            enabled=True,
            ttl_seconds=spec.gutter.ttl_seconds,
            shards=[
                ShardEndpoint(
                    name=gutter_member(i),
                    address=gutter_address(context.name, i, context.namespace, REDIS_PORT),
                )
                for i in range(spec.gutter.size)
            ],
        )
    sidecar = spec.sidecar
    settings = SidecarConfig(
        listen=f"127.0.0.1:{sidecar.port}",
        # On every address: the kubelet's probes and Prometheus reach it through the pod's IP.
        admin_listen=f"0.0.0.0:{sidecar.admin_port}",
        shards=shards,
        ring=routing.ring,
        pool=PoolConfig(
            connections_per_shard=sidecar.pool_size,
            connect_timeout_ms=sidecar.connect_timeout_ms,
            request_timeout_ms=sidecar.request_timeout_ms,
        ),
        auth=AuthConfig(shard_password_file=PASSWORD_FILE if spec.auth.enabled else None),
        gutter=gutter,
        health=HealthConfig(
            check_interval_ms=sidecar.health.check_interval_ms,
            eject_after_failures=sidecar.health.eject_after_failures,
            slow_threshold_ms=sidecar.health.slow_threshold_ms,
            max_ejection_percent=sidecar.health.max_ejection_percent,
        ),
        warmup=routing.warmup,
        hot_keys=HotKeysConfig(
            enabled=sidecar.hot_keys.enabled,
            top_k=sidecar.hot_keys.top_k,
            threshold_per_second=sidecar.hot_keys.threshold_per_second,
        ),
        l1=L1Config(
            enabled=sidecar.l1.enabled,
            max_entries=sidecar.l1.max_entries,
            ttl_ms=sidecar.l1.ttl_ms,
        ),
    )
    # The version names the ring and the exact content: sidecars report it in their metrics,
    # so "has every sidecar picked up the change?" is one query.
    digest = content_hash(settings.model_dump(mode="json", by_alias=True), length=12)
    return settings.model_copy(update={"config_version": f"{routing.ring_version}-{digest}"})


def sidecar_config_map(context: RenderContext, settings: SidecarConfig) -> Manifest:
    """The ConfigMap holding ``settings`` (from :func:`sidecar_settings`) for the injector."""
    annotations = {SIDECAR_IMAGE_ANNOTATION: context.spec.sidecar.image}
    secret = context.password_secret()
    if secret is not None:
        annotations[AUTH_SECRET_ANNOTATION] = secret[0]
        annotations[AUTH_SECRET_KEY_ANNOTATION] = secret[1]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            context.owner, sidecar_config(context.name), "sidecar-config", **annotations
        ),
        "data": {CONFIG_KEY: settings.to_json()},
    }
