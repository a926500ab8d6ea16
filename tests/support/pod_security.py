"""What the Pod Security Standards' "restricted" profile asks of a pod, asserted in one place.

Every container the chart or the operator runs or injects carries the whole profile in its own
securityContext (plus a read-only root filesystem), so it holds in any pod it lands in, whatever
that pod's own context says. The values are written out here, not imported: a test of the
operator's manifests must not agree with them by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def assert_restricted(container: Mapping[str, Any]) -> None:
    """The container's own securityContext has every setting of the restricted profile."""
    context = container.get("securityContext", {})
    found = {name: context.get(name) for name in RESTRICTED_CONTAINER}
    assert found == RESTRICTED_CONTAINER, f"container {container.get('name')!r}: {found}"


def assert_restricted_pod(pod_spec: Mapping[str, Any]) -> None:
    """The pod's securityContext is restricted, and so is each of its (init) containers."""
    context = pod_spec.get("securityContext", {})
    found = {name: context.get(name) for name in RESTRICTED_POD}
    assert found == RESTRICTED_POD, f"pod securityContext: {found}"
    containers = [*pod_spec.get("initContainers", []), *pod_spec["containers"]]
    assert containers, "a pod without containers"
    for container in containers:
        assert_restricted(container)
