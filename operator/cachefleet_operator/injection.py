"""Sidecar injection as a pure function: a pod and its CacheCluster's facts → a JSON patch.

The webhook (``webhook/server.py``) only gathers the facts and answers the API server; what is
injected, and when nothing is, is decided here:

- only pods labelled ``cachefleet.io/cluster: NAME`` and not the fleet's own Redis pods (they
  carry ``cachefleet.io/role``) get the sidecar;
- a pod that already has it is left exactly as it is (the same spec created twice, or a
  reinvocation, is injected once);
- on servers with native sidecars (1.29 and later) the sidecar is the first init container with
  ``restartPolicy: Always`` and a startup probe: it is ready before any other container starts
  and is stopped after the app. On older servers it is the first regular container;
- the sidecar's config and the shards' password arrive in one projected volume at
  ``/etc/cachefleet`` (``sidecar.json`` and ``auth/password``), which the kubelet keeps current,
  so a ring change reaches the running sidecar without a restart;
- every app container gets ``REDIS_URL=redis://127.0.0.1:PORT`` unless it sets it already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cachefleet_operator.api import CacheClusterSpec, SpecError, parse_spec
from cachefleet_operator.children.context import RenderContext
from cachefleet_operator.children.resources import container_resources
from cachefleet_operator.children.security import restricted_container
from cachefleet_operator.children.sidecar_config import CONFIG_KEY, PASSWORD_FILE
from cachefleet_operator.labels import CLUSTER, ROLE, Owner
from cachefleet_operator.naming import sidecar_config

CONTAINER_NAME = "cachefleet-sidecar"
VOLUME_NAME = "cachefleet-sidecar"
CONFIG_DIR = "/etc/cachefleet"
CONFIG_FILE = f"{CONFIG_DIR}/{CONFIG_KEY}"
INJECTED_ANNOTATION = "cachefleet.io/sidecar-injected"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
SIDECAR_UID = 10001  # the sidecar image's user
DEFAULT_REQUESTS = {"cpu": "50m", "memory": "64Mi"}
ADMIN_PORT_NAME = "cf-admin"

Outcome = Literal["injected", "already-injected", "not-labelled", "fleet-pod", "no-cluster"]


@dataclass(frozen=True)
class SidecarFacts:
    """What the injection needs to know about the CacheCluster a pod names."""

    cluster: str
    image: str
    port: int
    admin_port: int
    config_map: str
    # (Secret, key) holding the shards' password, or None when auth is off.
    password: tuple[str, str] | None
    resources: dict[str, Any]
    # The server runs init containers with restartPolicy: Always (Kubernetes 1.29+).
    native_sidecars: bool

    @classmethod
    def from_spec(
        cls, name: str, namespace: str, spec: CacheClusterSpec, *, native_sidecars: bool
    ) -> SidecarFacts:
        context = RenderContext(Owner(name, namespace, ""), spec)
        sidecar = spec.sidecar
        return cls(
            cluster=name,
            image=sidecar.image,
            port=sidecar.port,
            admin_port=sidecar.admin_port,
            config_map=sidecar_config(name),
            password=context.password_secret(),
            resources=container_resources(DEFAULT_REQUESTS, sidecar.resources),
            native_sidecars=native_sidecars,
        )


def facts_for_cluster(cluster: dict[str, Any], *, native_sidecars: bool) -> SidecarFacts | None:
    """Facts from a CacheCluster object: its spec, else the last valid one the operator used.

    None when it has never had a valid spec: then no sidecar ConfigMap exists to mount.
    """
    meta = cluster.get("metadata") or {}
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    candidates = [cluster.get("spec"), (cluster.get("status") or {}).get("appliedSpec")]
    for raw in candidates:
        if raw is None:
            continue
        try:
            spec = parse_spec(raw)
        except SpecError:
            continue
        return SidecarFacts.from_spec(name, namespace, spec, native_sidecars=native_sidecars)
    return None


def requested_cluster(pod: dict[str, Any]) -> tuple[Outcome, str | None]:
    """Whether ``pod`` asks for a sidecar, and of which CacheCluster."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    name = labels.get(CLUSTER)
    if not name:
        return "not-labelled", None
    if ROLE in labels:
        # The fleet's own Redis pods carry the cluster label too: never inject into them.
        return "fleet-pod", name
    if _has_sidecar(pod):
        return "already-injected", name
    return "injected", name


def _has_sidecar(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return any(c.get("name") == CONTAINER_NAME for c in containers)


def sidecar_container(facts: SidecarFacts) -> dict[str, Any]:
    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": ADMIN_PORT_NAME},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        }

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": facts.image,
        "command": ["cachefleet", "sidecar", "--config", CONFIG_FILE],
        "ports": [{"name": ADMIN_PORT_NAME, "containerPort": facts.admin_port, "protocol": "TCP"}],
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "readinessProbe": probe("/readyz", 5, 3),
        "livenessProbe": probe("/healthz", 10, 6),
        "resources": facts.resources,
        "securityContext": restricted_container(SIDECAR_UID),
        "volumeMounts": [{"name": VOLUME_NAME, "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    if facts.native_sidecars:
        container["restartPolicy"] = "Always"
        # Up to a minute to start listening; the app's containers wait for it.
        container["startupProbe"] = {**probe("/readyz", 1, 60), "timeoutSeconds": 1}
    return container


def sidecar_volume(facts: SidecarFacts) -> dict[str, Any]:
    sources: list[dict[str, Any]] = [
        {
            "configMap": {
                "name": facts.config_map,
                "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}],
            }
        }
    ]
    if facts.password is not None:
        secret, key = facts.password
        relative = PASSWORD_FILE.removeprefix(CONFIG_DIR + "/")
        sources.append({"secret": {"name": secret, "items": [{"key": key, "path": relative}]}})
    # Readable by the sidecar's uid whatever the pod's fsGroup (the files are owned by root).
    return {"name": VOLUME_NAME, "projected": {"sources": sources, "defaultMode": 0o444}}


def injection_patch(pod: dict[str, Any], facts: SidecarFacts) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) that adds the sidecar to ``pod``; [] when it has it already."""
    if _has_sidecar(pod):
        return []
    spec = pod.get("spec") or {}
    # The app's env first: the sidecar's insertion below shifts the containers' indices.
    patch: list[dict[str, Any]] = []
    url = f"redis://127.0.0.1:{facts.port}"
    for index, app in enumerate(spec.get("containers") or []):
        env = app.get("env")
        if env is None:
            patch.append(_op("add", f"/spec/containers/{index}/env", [_env(url)]))
        elif not any(entry.get("name") == "REDIS_URL" for entry in env):
            patch.append(_op("add", f"/spec/containers/{index}/env/-", _env(url)))
    container = sidecar_container(facts)
    # First in its list, so the kubelet starts it before the app's containers.
    patch.append(
        _prepend(spec, "initContainers" if facts.native_sidecars else "containers", container)
    )
    patch.append(_append(spec, "volumes", sidecar_volume(facts)))
    patch += _annotations(pod, facts)
    return patch


def _env(url: str) -> dict[str, Any]:
    return {"name": "REDIS_URL", "value": url}


def _annotations(pod: dict[str, Any], facts: SidecarFacts) -> list[dict[str, Any]]:
    annotations = (pod.get("metadata") or {}).get("annotations")
    wanted = {INJECTED_ANNOTATION: facts.cluster}
    apps = (pod.get("spec") or {}).get("containers") or []
    if apps and (annotations or {}).get(DEFAULT_CONTAINER_ANNOTATION) is None:
        # `kubectl logs` and `exec` keep going to the app, not to the sidecar.
        wanted[DEFAULT_CONTAINER_ANNOTATION] = apps[0].get("name", "")
    if annotations is None:
        return [_op("add", "/metadata/annotations", wanted)]
    return [
        _op("add", f"/metadata/annotations/{_escape(key)}", value) for key, value in wanted.items()
    ]


def _prepend(spec: dict[str, Any], field: str, value: dict[str, Any]) -> dict[str, Any]:
    if spec.get(field) is None:
        return _op("add", f"/spec/{field}", [value])
    return _op("add", f"/spec/{field}/0", value)


def _append(spec: dict[str, Any], field: str, value: dict[str, Any]) -> dict[str, Any]:
    if spec.get(field) is None:
        return _op("add", f"/spec/{field}", [value])
    return _op("add", f"/spec/{field}/-", value)


def _op(operation: str, path: str, value: Any) -> dict[str, Any]:
    return {"op": operation, "path": path, "value": value}


def _escape(key: str) -> str:
    """A JSON pointer token (RFC 6901): ``~`` and ``/`` escaped."""
    return key.replace("~", "~0").replace("/", "~1")
