"""Desired children for representative specs: valid objects carrying what they must."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cachefleet.config import SidecarConfig
from cachefleet_operator.manifest_hash import content_hash
from cachefleet_operator.plan import APPLIED_HASH_ANNOTATION, Manifest

from tests.operator.fleet import Fleet, cache_cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    document["metadata"].update(namespace="apps", uid="uid-example", generation=1)
    return document


def _children(cluster: dict[str, Any]) -> dict[tuple[str, str], Manifest]:
    plan = Fleet(cluster).plan()
    assert plan.apply, plan.status.get("conditions")
    return {(m["kind"], m["metadata"]["name"]): m for m in plan.apply + plan.create_if_absent}


SPECS = {
    "defaults": cache_cluster(shards=3),
    "basic example": _example("basic.yaml"),
    "production example": _example("production.yaml"),
    "no auth, no gutter, persistence": cache_cluster(
        shards=2,
        auth={"enabled": False},
        gutter={"enabled": False},
        persistence={"enabled": True, "size": "5Gi", "storageClassName": "fast"},
        scheduling={"spreadAcrossZones": False, "podDisruptionBudget": {"enabled": False}},
    ),
    "existing secret": cache_cluster(
        shards=1, auth={"existingSecret": {"name": "team-redis", "key": "pw"}}
    ),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_child_is_a_valid_object_owned_and_labelled(name: str) -> None:
    cluster = SPECS[name]
    meta = cluster["metadata"]
    for (kind, child_name), manifest in _children(cluster).items():
        kubernetes_validate.validate(manifest, "1.25.0", strict=True)
        child_meta = manifest["metadata"]
        assert child_meta["namespace"] == "apps"
        assert child_meta["ownerReferences"] == [
            {
                "apiVersion": "cachefleet.io/v1alpha1",
                "kind": "CacheCluster",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        labels = child_meta["labels"]
        assert labels["app.kubernetes.io/name"] == "cachefleet"
        assert labels["app.kubernetes.io/instance"] == meta["name"]
        assert labels["app.kubernetes.io/managed-by"] == "cachefleet-operator"
        assert labels["cachefleet.io/cluster"] == meta["name"]
        if "-shard-" in child_name and kind in ("StatefulSet", "Service"):
            assert labels["cachefleet.io/shard"] == child_name.split("-", 1)[1]
        if kind != "Secret":
            stamped = child_meta["annotations"][APPLIED_HASH_ANNOTATION]
            unstamped = json.loads(json.dumps(manifest))
            del unstamped["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
            assert stamped == content_hash(unstamped), f"{kind}/{child_name}: wrong hash"


def test_a_shard_statefulset_runs_redis_with_the_password_and_probes() -> None:
    children = _children(_example("production.yaml"))
    sts = children[("StatefulSet", "sessions-shard-4")]
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["serviceName"] == "sessions-shard-4"
    assert sts["spec"]["selector"]["matchLabels"] == {
        "cachefleet.io/cluster": "sessions",
        "cachefleet.io/role": "shard",
        "cachefleet.io/shard": "shard-4",
    }
    pod = sts["spec"]["template"]["spec"]
    [redis] = pod["containers"]
    assert redis["image"] == "redis:7.2"
    env = {e["name"]: e for e in redis["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "sessions-auth",
        "key": "password",
    }
    assert env["REDISCLI_AUTH"]["valueFrom"] == env["REDIS_PASSWORD"]["valueFrom"]
    assert env["PRIMARY_HOST"]["value"] == "sessions-shard-4-0.sessions-shard-4.apps.svc"
    assert "redis-cli" in " ".join(redis["readinessProbe"]["exec"]["command"])
    assert "redis-cli" in " ".join(redis["livenessProbe"]["exec"]["command"])
    assert redis["resources"] == {
        "requests": {"cpu": "500m", "memory": "2560Mi"},
        "limits": {"memory": "2560Mi"},
    }
    assert pod["nodeSelector"] == {"node-pool": "cache"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "cache", "effect": "NoSchedule"}
    ]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert spread["kubernetes.io/hostname"]["labelSelector"]["matchLabels"] == {
        "cachefleet.io/cluster": "sessions",
        "cachefleet.io/role": "shard",
    }
    assert "volumeClaimTemplates" not in sts["spec"]
    service = children[("Service", "sessions-shard-4")]
    assert service["spec"]["clusterIP"] == "None"
    # Server-side apply on 1.20 refuses a port without its protocol (part of the merge key).
    assert service["spec"]["ports"][0]["protocol"] == "TCP"
    assert redis["ports"][0]["protocol"] == "TCP"
    assert service["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]


def test_redis_conf_comes_from_the_spec_and_persistence_is_off_by_default() -> None:
    conf = _children(_example("production.yaml"))[("ConfigMap", "sessions-redis")]["data"]
    shard = conf["shard.conf"].splitlines()
    assert "maxmemory 2gb" in shard
    assert "maxmemory-policy allkeys-lfu" in shard
    assert 'save ""' in shard and "appendonly no" in shard
    assert "hz 20" in shard and "lazyfree-lazy-eviction yes" in shard
    assert "maxmemory 256mb" in conf["gutter.conf"].splitlines()

    persistent = _children(SPECS["no auth, no gutter, persistence"])
    shard = persistent[("ConfigMap", "cache-redis")]["data"]["shard.conf"]
    assert 'save ""' not in shard.splitlines()
    sts = persistent[("StatefulSet", "cache-shard-0")]
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    env = {e["name"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "REDIS_PASSWORD" not in env


def test_changing_redis_conf_rolls_the_shards() -> None:
    before = _children(cache_cluster(shards=1))[("StatefulSet", "cache-shard-0")]
    after = _children(cache_cluster(shards=1, redis={"maxmemory": "1gb"}))[
        ("StatefulSet", "cache-shard-0")
    ]
    key = "cachefleet.io/redis-config-hash"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][key]
        != after["spec"]["template"]["metadata"]["annotations"][key]
    )


def test_the_sidecar_config_is_the_data_planes_schema_with_stable_addresses() -> None:
    children = _children(_example("production.yaml"))
    config_map = children[("ConfigMap", "sessions-sidecar")]
    config = SidecarConfig.model_validate(json.loads(config_map["data"]["sidecar.json"]))
    assert [s.name for s in config.shards] == [f"shard-{i}" for i in range(6)]
    assert config.shards[4].address == "sessions-shard-4-0.sessions-shard-4.apps.svc:6379"
    ring = config.ring.to_ring()
    shares = ring.shares()
    assert shares["shard-4"] == pytest.approx(0.25, abs=1e-6)
    assert shares["shard-0"] == pytest.approx(0.125, abs=1e-6)
    assert config.gutter.enabled and config.gutter.ttl_seconds == 10
    assert [g.address for g in config.gutter.shards] == [
        "sessions-gutter-0.sessions-gutter.apps.svc:6379",
        "sessions-gutter-1.sessions-gutter.apps.svc:6379",
    ]
    assert config.pool.connections_per_shard == 2 and config.pool.request_timeout_ms == 500
    assert config.hot_keys.enabled and config.hot_keys.top_k == 64
    assert config.l1.enabled and config.l1.ttl_ms == 500
    assert config.auth.shard_password_file == "/etc/cachefleet/auth/password"
    assert (
        config.listen == "127.0.0.1:6379" and config.admin_listen == "0.0.0.0:9121"
    )  # probes come to the pod IP
    assert config.config_version.startswith("1-")
    assert config_map["metadata"]["annotations"]["cachefleet.io/auth-secret"] == "sessions-auth"


def test_a_referenced_secret_is_used_and_none_is_generated() -> None:
    children = _children(SPECS["existing secret"])
    assert not any(kind == "Secret" for kind, _ in children)
    sts = children[("StatefulSet", "cache-shard-0")]
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "team-redis", "key": "pw"}


def test_disruption_budgets_cover_shards_and_gutter() -> None:
    children = _children(
        cache_cluster(shards=3, scheduling={"podDisruptionBudget": {"maxUnavailable": 2}})
    )
    shards = children[("PodDisruptionBudget", "cache-shards")]
    assert shards["spec"] == {
        "maxUnavailable": 2,
        "selector": {
            "matchLabels": {"cachefleet.io/cluster": "cache", "cachefleet.io/role": "shard"}
        },
    }
    assert ("PodDisruptionBudget", "cache-gutter") in children
