"""Leader election on a ``coordination.k8s.io/v1`` Lease: who may act, as a pure decision.

Every replica runs the watch and keeps its caches warm, and every replica serves the webhook;
only the Lease's holder runs the reconcile scheduler and writes. ``decide`` takes the Lease as
read and the clock and says what to write (nothing, a renewal, a take-over); ``Leadership``
(below) runs it in a loop. Writes by the leader stop at ``renew_deadline`` after its last
successful renewal, before the Lease can expire for anyone else (``lease_seconds``), so two
replicas never act at once as long as clocks agree to within the difference, the usual
assumption for Kubernetes Leases. A replica that stops cleanly gives the Lease up at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cachefleet_operator.labels import MANAGED_BY, MANAGER

MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class ElectionTiming:
    lease_seconds: float = 15.0
    # The leader stops writing this long after its last successful renewal.
    renew_deadline: float = 10.0
    # How often the leader renews and a follower looks.
    retry_seconds: float = 2.0

    def problems(self) -> list[str]:
        found = []
        if not 0 < self.retry_seconds < self.renew_deadline < self.lease_seconds:
            found.append(
                "leader election needs 0 < retry < renew deadline < lease duration, got "
                f"{self.retry_seconds:g} < {self.renew_deadline:g} < {self.lease_seconds:g}"
            )
        return found


@dataclass(frozen=True)
class LeaseState:
    """The parts of a Lease that matter, read from the API."""

    holder: str
    lease_seconds: float
    renew_time: datetime | None
    acquire_time: datetime | None
    transitions: int
    resource_version: str

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> LeaseState:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_seconds=float(spec.get("leaseDurationSeconds") or 0),
            renew_time=_parse(spec.get("renewTime")),
            acquire_time=_parse(spec.get("acquireTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )

    def expires(self) -> datetime | None:
        if not self.holder or self.renew_time is None:
            return None
        return self.renew_time + timedelta(seconds=self.lease_seconds)


@dataclass(frozen=True)
class Decision:
    action: Literal["create", "renew", "take", "wait"]
    # The Lease to write (for every action but "wait").
    lease: dict[str, Any] | None
    # Seconds until it is worth looking again.
    next_look: float


def decide(
    current: LeaseState | None,
    me: str,
    now: datetime,
    timing: ElectionTiming,
    *,
    name: str,
    namespace: str,
) -> Decision:
    if current is None:
        body = _lease(name, namespace, me, now, now, 0, timing, None)
        return Decision("create", body, timing.retry_seconds)
    if current.holder == me:
        acquired = current.acquire_time or now
        body = _lease(name, namespace, me, acquired, now, current.transitions, timing, current)
        return Decision("renew", body, timing.retry_seconds)
    expires = current.expires()
    if expires is None or now >= expires:
        body = _lease(name, namespace, me, now, now, current.transitions + 1, timing, current)
        return Decision("take", body, timing.retry_seconds)
    # Look again when it would expire, or sooner to notice a clean hand-over.
    until = (expires - now).total_seconds()
    return Decision("wait", None, max(0.05, min(timing.retry_seconds, until)))


def released(lease: LeaseState, name: str, namespace: str, now: datetime) -> dict[str, Any]:
    """The Lease given up by its holder, so a follower takes over at its next look."""
    body = _lease(
        name, namespace, "", lease.acquire_time or now, now, lease.transitions, None, lease
    )
    body["spec"]["leaseDurationSeconds"] = 1
    return body


def _lease(
    name: str,
    namespace: str,
    holder: str,
    acquired: datetime,
    renewed: datetime,
    transitions: int,
    timing: ElectionTiming | None,
    current: LeaseState | None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {MANAGED_BY: MANAGER},
    }
    if current is not None:
        # Optimistic concurrency: two replicas taking over at once, one gets a 409.
        metadata["resourceVersion"] = current.resource_version
    spec: dict[str, Any] = {
        "holderIdentity": holder,
        "acquireTime": _format(acquired),
        "renewTime": _format(renewed),
        "leaseTransitions": transitions,
    }
    if timing is not None:
        spec["leaseDurationSeconds"] = max(1, round(timing.lease_seconds))
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }


def _format(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(MICRO_TIME)


def _parse(text: Any) -> datetime | None:
    if not text:
        return None
    value = str(text).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
