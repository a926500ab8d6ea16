"""What every container the operator runs or injects gets: the restricted security context.

Non-root, no privilege escalation, every capability dropped, a read-only root filesystem (the
writable paths are volumes), seccomp RuntimeDefault: the Pod Security Standards' "restricted"
profile, so the fleet runs in namespaces that enforce it.
"""

from __future__ import annotations

from typing import Any


def restricted_container(run_as_user: int | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as_user is not None:
        context["runAsUser"] = run_as_user
        context["runAsGroup"] = run_as_user
    return context
