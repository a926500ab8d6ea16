"""Pods that asked for the sidecar and started without it: each gets one Warning Event.

With the webhook's ``failurePolicy: Ignore`` (the default) a pod created while no replica could
answer starts without its sidecar, and the API server tells nobody. The leader looks for such
pods every resync period (one LIST per watched namespace) and says so on the pod.
"""

from __future__ import annotations

from typing import Any

from cachefleet_operator.injection import requested_cluster
from cachefleet_operator.labels import CLUSTER, ROLE
from cachefleet_operator.plan import EventSpec

# The pods that ask for a sidecar: the cluster label, and not the fleet's own Redis pods.
SELECTOR = f"{CLUSTER},!{ROLE}"
REASON = "SidecarMissing"


def without_sidecar(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Running-or-starting pods the webhook would have given a sidecar and that have none."""
    return [
        pod
        for pod in pods
        if not (pod.get("metadata") or {}).get("deletionTimestamp")
        and requested_cluster(pod)[0] == "injected"
    ]


def warning(pod: dict[str, Any]) -> EventSpec:
    cluster = (pod.get("metadata") or {}).get("labels", {}).get(CLUSTER, "")
    return EventSpec(
        "Warning",
        REASON,
        f"started without the cachefleet sidecar of CacheCluster {cluster!r}: the injection "
        "webhook did not answer when it was created (failurePolicy Ignore) or refused it; "
        "delete the pod to have it created again with the sidecar",
    )
