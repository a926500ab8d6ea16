"""The plain data between the pure reconciler and the one module that talks to Kubernetes.

``reconcile.reconcile(cluster, observed) -> ReconcilePlan`` is a pure function: everything it
needs from the outside world comes in ``Observed`` (including anything random, such as a fresh
password, and the clock), and everything it wants done goes out in ``ReconcilePlan``. The kopf
handlers gather ``Observed``, call it, and carry the plan out; they decide nothing themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Manifest = dict[str, Any]

# Annotation holding a hash of the manifest the operator last applied: when the live object
# carries the same hash, applying again would change nothing, so an idle resync writes nothing.
APPLIED_HASH_ANNOTATION = "cachefleet.io/applied-hash"


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class EventSpec:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class WarmupObservation:
    """What the warm-up signal saw on the shards that are warming (the next ring's new owners).

    ``hit_ratio`` is None when nothing could be measured yet (no traffic, shards not up).
    """

    hit_ratio: float | None
    observed_at: datetime


@dataclass(frozen=True)
class LeftoverSweep:
    """How far the deletion of keys that shards hold from an earlier ring has come this change
    (see leftovers.py): ``done`` once every shard that gains keys was scanned to its end.

    ``waiting_on`` says which shard could not be scanned and why.
    """

    done: bool
    scanned: int
    deleted: int
    observed_at: datetime
    waiting_on: str | None = None


@dataclass(frozen=True)
class SidecarReports:
    """Which config each sidecar runs, as they said recently (their heartbeats on the shards).

    ``versions`` maps a sidecar (pod name and process) to the ``configVersion`` it serves; only
    sidecars heard from within the last ``SIDECAR_REPORT_MAX_AGE`` seconds are in it.
    """

    versions: dict[str, str]
    observed_at: datetime


@dataclass(frozen=True)
class Observed:
    now: datetime
    # Live children owned by this CacheCluster, keyed by (kind, name); values are the objects
    # as the API returned them (plain dicts).
    children: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    # A freshly generated password, used only when the auth Secret does not exist yet.
    generated_password: str = ""
    warmup: WarmupObservation | None = None
    sidecars: SidecarReports | None = None
    # While a change is Provisioning: the sweep of leftover keys (None: nothing could be swept).
    leftovers: LeftoverSweep | None = None


@dataclass(frozen=True)
class ReconcilePlan:
    # Server-side applied under the operator's field manager, skipped when the live object's
    # APPLIED_HASH_ANNOTATION equals the manifest's.
    apply: list[Manifest] = field(default_factory=list)
    # Created only if absent, never updated (the generated Secret: its password must not change).
    create_if_absent: list[Manifest] = field(default_factory=list)
    delete: list[ChildRef] = field(default_factory=list)
    # The complete desired .status; written only when it differs from the live status.
    status: dict[str, Any] = field(default_factory=dict)
    events: list[EventSpec] = field(default_factory=list)
    # Seconds until the reconciler wants to look again (a warm-up step), or None.
    requeue_after: float | None = None
