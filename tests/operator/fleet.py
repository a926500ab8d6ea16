"""An in-memory stand-in for the API server around the pure reconciler.

It does what the kopf edge does with a plan (apply, create if absent, delete, write status),
so tests can drive a CacheCluster through many reconciles with a fake clock, and read back what
the sidecars would see. The reconciler under test is the real one.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cachefleet.config import SidecarConfig
from cachefleet_operator.plan import (
    LeftoverSweep,
    Observed,
    ReconcilePlan,
    SidecarReports,
    WarmupObservation,
)
from cachefleet_operator.reconcile import reconcile

START = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def cache_cluster(
    name: str = "cache",
    namespace: str = "apps",
    generation: int = 1,
    **spec: Any,
) -> dict[str, Any]:
    spec.setdefault("shards", 4)
    return {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "CacheCluster",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "generation": generation,
        },
        "spec": spec,
    }


@dataclass
class Fleet:
    cluster: dict[str, Any]
    now: datetime = START
    children: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # Pods come up when their StatefulSet exists, unless a test says otherwise.
    pods_ready: bool = True
    hit_ratio: float | None = None
    # Which config each sidecar says it runs (None: the reports could not be read).
    sidecars: dict[str, str] | None = field(default_factory=dict)
    # The sweep of keys left from an earlier ring, while a change is Provisioning (None: the
    # shards could not be reached at all).
    leftovers: LeftoverSweep | None = field(
        default_factory=lambda: LeftoverSweep(done=True, scanned=0, deleted=0, observed_at=START)
    )
    plans: list[ReconcilePlan] = field(default_factory=list)
    writes: int = 0
    password_counter: int = 0

    def observed(self) -> Observed:
        self.password_counter += 1
        warmup = WarmupObservation(self.hit_ratio, self.now) if self.hit_ratio is not None else None
        return Observed(
            now=self.now,
            children=copy.deepcopy(self.children),
            generated_password=f"generated-{self.password_counter}",
            warmup=warmup,
            sidecars=None if self.sidecars is None else SidecarReports(self.sidecars, self.now),
            leftovers=self.leftovers,
        )

    def plan(self) -> ReconcilePlan:
        """Reconcile without carrying anything out."""
        return reconcile(copy.deepcopy(self.cluster), self.observed())

    def reconcile(self) -> ReconcilePlan:
        plan = self.plan()
        self.carry_out(plan)
        self.plans.append(plan)
        return plan

    def carry_out(self, plan: ReconcilePlan) -> None:
        for manifest in plan.create_if_absent:
            key = (manifest["kind"], manifest["metadata"]["name"])
            if key not in self.children:
                self.children[key] = copy.deepcopy(manifest)
                self.writes += 1
        for manifest in plan.apply:
            key = (manifest["kind"], manifest["metadata"]["name"])
            live = self.children.get(key)
            if live is not None and _hash(live) == _hash(manifest):
                continue
            stored = copy.deepcopy(manifest)
            if manifest["kind"] == "StatefulSet":
                replicas = manifest["spec"]["replicas"]
                stored["status"] = {"readyReplicas": replicas if self.pods_ready else 0}
            self.children[key] = stored
            self.writes += 1
        for ref in plan.delete:
            if self.children.pop((ref.kind, ref.name), None) is not None:
                self.writes += 1
        if plan.status and plan.status != self.cluster.get("status"):
            self.cluster["status"] = copy.deepcopy(plan.status)
            self.writes += 1

    def set_ready(self, ready: bool) -> None:
        self.pods_ready = ready
        for (kind, _), child in self.children.items():
            if kind == "StatefulSet":
                child["status"] = {"readyReplicas": child["spec"]["replicas"] if ready else 0}

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def edit(self, **spec: Any) -> None:
        self.cluster["spec"].update(spec)
        self.cluster["metadata"]["generation"] += 1

    # -- what the world sees ---------------------------------------------------------------

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.cluster.get("status") or {})

    @property
    def phase(self) -> str:
        return str(self.status.get("phase"))

    def sidecar_config(self) -> SidecarConfig:
        name = self.cluster["metadata"]["name"]
        data = self.children[("ConfigMap", f"{name}-sidecar")]["data"]["sidecar.json"]
        return SidecarConfig.model_validate(json.loads(data))

    def shard_statefulsets(self) -> list[str]:
        return sorted(
            name for kind, name in self.children if kind == "StatefulSet" and "-shard-" in name
        )

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == type_)


def _hash(manifest: dict[str, Any]) -> str | None:
    value = ((manifest.get("metadata") or {}).get("annotations") or {}).get(
        "cachefleet.io/applied-hash"
    )
    return value if isinstance(value, str) else None
