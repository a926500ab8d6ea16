"""A Redis StatefulSet and its headless Service: the shape shared by shards and the gutter."""

from __future__ import annotations

from typing import Any

from cachefleet_operator.children.context import REDIS_PORT, RenderContext
from cachefleet_operator.children.resources import container_resources, redis_memory_request
from cachefleet_operator.children.security import restricted_container
from cachefleet_operator.labels import CLUSTER, ROLE, metadata, selector
from cachefleet_operator.naming import redis_config
from cachefleet_operator.plan import Manifest

CONFIG_HASH_ANNOTATION = "cachefleet.io/redis-config-hash"
CONFIG_DIR = "/etc/cachefleet/redis"
REDIS_UID = 999  # the redis user of the official image

# The password comes from the Secret through the environment, never through the ConfigMap;
# replicas (ordinal > 0) follow pod 0 of their own StatefulSet.
START_SCRIPT = """set -eu
conf="${TMPDIR:-/tmp}/redis.conf"
cp "$CONFIG_FILE" "$conf"
if [ -n "${REDIS_PASSWORD:-}" ]; then
  # A double-quoted redis.conf string: escape backslashes and quotes of a user's password.
  quoted=$(printf '%s' "$REDIS_PASSWORD" | sed 's/[\\\\"]/\\\\&/g')
  printf 'requirepass "%s"\\nmasterauth "%s"\\n' "$quoted" "$quoted" >> "$conf"
fi
case "$POD_NAME" in
  *-0) ;;
  *) printf 'replicaof %s %s\\n' "$PRIMARY_HOST" "${PRIMARY_PORT:-6379}" >> "$conf" ;;
esac
exec redis-server "$conf"
"""
# redis-cli reads REDISCLI_AUTH itself; an error reply (NOAUTH, LOADING) has no PONG.
PING = ["sh", "-c", "redis-cli -p 6379 ping | grep -q PONG"]


def headless_service(context: RenderContext, name: str, role: str, shard: str | None) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(context.owner, name, role, shard),
        "spec": {
            "clusterIP": "None",
            # Pods resolve before they are ready: replicas find their primary while it loads,
            # and sidecars connect as soon as the server answers.
            "publishNotReadyAddresses": True,
            "selector": selector(context.owner, role, shard),
            # protocol is spelled out: it is part of the list's merge key, and server-side
            # apply on Kubernetes 1.20 refuses a port without it.
            "ports": [
                {"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}
            ],
        },
    }


def redis_statefulset(
    context: RenderContext,
    *,
    name: str,
    role: str,
    shard: str | None,
    replicas: int,
    config_key: str,
    config_hash: str,
    spread: bool,
) -> Manifest:
    spec = context.spec
    pod_labels = metadata(context.owner, name, role, shard)["labels"]
    env: list[dict[str, Any]] = [
        {"name": "CONFIG_FILE", "value": f"{CONFIG_DIR}/{config_key}"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "PRIMARY_HOST", "value": f"{name}-0.{name}.{context.namespace}.svc"},
    ]
    secret = context.password_secret()
    if secret is not None:
        ref = {"secretKeyRef": {"name": secret[0], "key": secret[1]}}
        env += [{"name": "REDIS_PASSWORD", "valueFrom": ref}]
        env += [{"name": "REDISCLI_AUTH", "valueFrom": ref}]
    container: dict[str, Any] = {
        "name": "redis",
        "image": spec.redis.image,
        "command": ["sh", "-c", START_SCRIPT],
        "env": env,
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "exec": {"command": PING},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "exec": {"command": PING},
            "initialDelaySeconds": 15,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": "/data"},
            # The root filesystem is read-only: the start script writes redis.conf here.
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": restricted_container(),
        "resources": _resources(context, role),
    }
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": redis_config(context.name)}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    persistent = role == "shard" and spec.persistence.enabled
    if not persistent:
        volumes.append({"name": "data", "emptyDir": {}})
    pod_spec: dict[str, Any] = {
        "securityContext": {
            "runAsUser": REDIS_UID,
            "runAsGroup": REDIS_UID,
            "fsGroup": REDIS_UID,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Redis never talks to the Kubernetes API: no token in its pods.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": volumes,
    }
    scheduling = spec.scheduling
    if scheduling.node_selector:
        pod_spec["nodeSelector"] = dict(sorted(scheduling.node_selector.items()))
    if scheduling.tolerations:
        pod_spec["tolerations"] = [t.dump() for t in scheduling.tolerations]
    if scheduling.priority_class_name:
        pod_spec["priorityClassName"] = scheduling.priority_class_name
    if spread:
        constraints = _spread(context, role)
        if constraints:
            pod_spec["topologySpreadConstraints"] = constraints
    sts_spec: dict[str, Any] = {
        "serviceName": name,
        "replicas": replicas,
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector(context.owner, role, shard)},
        "template": {
            "metadata": {
                "labels": pod_labels,
                # A changed redis.conf rolls the pods: Redis reads its file only at start.
                "annotations": {CONFIG_HASH_ANNOTATION: config_hash},
            },
            "spec": pod_spec,
        },
    }
    if persistent:
        claim: dict[str, Any] = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": spec.persistence.size}},
            },
        }
        if spec.persistence.storage_class_name:
            claim["spec"]["storageClassName"] = spec.persistence.storage_class_name
        sts_spec["volumeClaimTemplates"] = [claim]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(context.owner, name, role, shard),
        "spec": sts_spec,
    }


def _resources(context: RenderContext, role: str) -> dict[str, Any]:
    """The user's requests and limits (shards only), every request left out defaulted.

    Memory is requested at 125% of maxmemory: Redis needs room above its data for buffers and
    fragmentation, and a request below what it uses invites eviction by the kubelet.
    """
    spec = context.spec
    maxmemory = spec.redis.maxmemory if role == "shard" else spec.gutter.maxmemory
    defaults = {
        "cpu": "100m" if role == "shard" else "50m",
        "memory": redis_memory_request(maxmemory),
    }
    return container_resources(defaults, spec.redis.resources if role == "shard" else None)


def _spread(context: RenderContext, role: str) -> list[dict[str, Any]]:
    """Spread all of the cluster's pods of this role, so no node or zone holds many shards."""
    scheduling = context.spec.scheduling
    keys = []
    if scheduling.spread_across_nodes:
        keys.append("kubernetes.io/hostname")
    if scheduling.spread_across_zones:
        keys.append("topology.kubernetes.io/zone")
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": scheduling.when_unsatisfiable,
            "labelSelector": {"matchLabels": {CLUSTER: context.name, ROLE: role}},
        }
        for key in keys
    ]
