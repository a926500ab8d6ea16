"""leader.decide: who holds the Lease, and when a follower may take it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cachefleet_operator.leader import ElectionTiming, LeaseState, decide, released

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
TIMING = ElectionTiming(lease_seconds=15, renew_deadline=10, retry_seconds=2)
WHERE = {"name": "cachefleet-operator", "namespace": "cachefleet-system"}


def held_by(holder: str, renewed: datetime, version: str = "7") -> LeaseState:
    lease = decide(None, holder, renewed, TIMING, **WHERE).lease
    assert lease is not None
    lease["metadata"]["resourceVersion"] = version
    return LeaseState.from_lease(lease)


def test_the_first_replica_creates_the_lease() -> None:
    decision = decide(None, "a", NOW, TIMING, **WHERE)
    assert decision.action == "create"
    assert decision.lease is not None
    spec = decision.lease["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15
    assert spec["renewTime"] == "2026-12-01T12:00:00.000000Z"
    assert "resourceVersion" not in decision.lease["metadata"]


def test_the_holder_renews_with_the_version_it_read() -> None:
    current = held_by("a", NOW)
    decision = decide(current, "a", NOW + timedelta(seconds=2), TIMING, **WHERE)
    assert decision.action == "renew" and decision.lease is not None
    assert decision.lease["metadata"]["resourceVersion"] == "7"
    assert decision.lease["spec"]["acquireTime"] == "2026-12-01T12:00:00.000000Z"
    assert decision.lease["spec"]["renewTime"] == "2026-12-01T12:00:02.000000Z"
    assert decision.lease["spec"]["leaseTransitions"] == 0


def test_a_follower_waits_until_the_lease_expires_then_takes_it() -> None:
    current = held_by("a", NOW)
    waiting = decide(current, "b", NOW + timedelta(seconds=14), TIMING, **WHERE)
    assert waiting.action == "wait" and waiting.lease is None
    assert waiting.next_look == 1.0  # wakes exactly when it expires, not a retry later
    taking = decide(current, "b", NOW + timedelta(seconds=15), TIMING, **WHERE)
    assert taking.action == "take" and taking.lease is not None
    assert taking.lease["spec"]["holderIdentity"] == "b"
    assert taking.lease["spec"]["leaseTransitions"] == 1
    assert taking.lease["metadata"]["resourceVersion"] == "7"  # a race loses with 409


def test_a_released_lease_is_taken_at_once() -> None:
    current = held_by("a", NOW)
    given_up = LeaseState.from_lease(
        {**released(current, **WHERE, now=NOW), "metadata": {"resourceVersion": "8"}}
    )
    assert given_up.holder == ""
    assert decide(given_up, "b", NOW, TIMING, **WHERE).action == "take"


def test_timing_must_leave_the_leader_time_to_stop_before_the_lease_expires() -> None:
    assert ElectionTiming().problems() == []
    assert ElectionTiming(lease_seconds=10, renew_deadline=10, retry_seconds=2).problems()
    assert ElectionTiming(lease_seconds=15, renew_deadline=1, retry_seconds=2).problems()
