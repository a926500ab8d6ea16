"""Labels and the owner reference every child carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cachefleet_operator.api import API_VERSION, KIND

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
CLUSTER = "cachefleet.io/cluster"
SHARD = "cachefleet.io/shard"
ROLE = "cachefleet.io/role"

MANAGER = "cachefleet-operator"


@dataclass(frozen=True)
class Owner:
    """The CacheCluster the children belong to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def selector(owner: Owner, role: str, shard: str | None = None) -> dict[str, str]:
    """The labels a workload selects its pods by; immutable, so only what never changes."""
    labels = {CLUSTER: owner.name, ROLE: role}
    if shard is not None:
        labels[SHARD] = shard
    return labels


def common(owner: Owner, role: str, shard: str | None = None) -> dict[str, str]:
    return {
        NAME: "cachefleet",
        INSTANCE: owner.name,
        MANAGED_BY: MANAGER,
        COMPONENT: role,
        **selector(owner, role, shard),
    }


def metadata(
    owner: Owner, name: str, role: str, shard: str | None = None, **annotations: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": common(owner, role, shard),
        "ownerReferences": [owner.reference()],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta
