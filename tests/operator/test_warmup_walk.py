"""A capacity change walked through every warm-up phase with a fake clock, via reconcile()."""

from __future__ import annotations

import copy
from typing import Any

from cachefleet.ring import RingAssignment, Shard, plan_change
from cachefleet_operator.clock import rfc3339
from cachefleet_operator.plan import LeftoverSweep
from cachefleet_operator.warmup import (
    POLL_SECONDS,
    SIDECAR_POLL_SECONDS,
    SIDECAR_WAIT_SECONDS,
    SWEEP_POLL_SECONDS,
)

from tests.operator.fleet import Fleet, cache_cluster

WARM_UP = {"steps": [1, 5, 25, 50, 100], "stepSeconds": 60, "graceSeconds": 300}


def settled(shards: int = 4, **spec: Any) -> Fleet:
    spec.setdefault("warmUp", dict(WARM_UP))
    fleet = Fleet(cache_cluster(shards=shards, **spec))
    fleet.reconcile()
    fleet.reconcile()
    assert fleet.phase == "Stable"
    return fleet


def reconcile_until(fleet: Fleet, phase: str, every: float | None = None, limit: int = 50) -> None:
    """Move the clock on (``every`` seconds, or when the last plan asked to be called again) and
    reconcile until the fleet is in ``phase``; a walk that stalls fails instead of spinning."""
    for _ in range(limit):
        if fleet.phase == phase:
            return
        fleet.advance(every or fleet.plans[-1].requeue_after or 5)
        fleet.reconcile()
    raise AssertionError(f"still {fleet.phase} after {limit} reconciles, never {phase}")


def reasons(fleet: Fleet) -> list[str]:
    return [event.reason for event in fleet.plans[-1].events]


def test_scale_up_walks_provisioning_shadowing_grace_finalizing_stable() -> None:
    fleet = settled(4)
    old_ring = fleet.status["ring"]
    fleet.edit(shards=5)

    plan = fleet.reconcile()
    assert fleet.phase == "Provisioning"
    [change] = [e for e in plan.events if e.reason == "CapacityChange"]
    assert change.message == "4 → 5 shards: 20.0% of keys move"
    assert fleet.status["movedPercent"] == 20.0
    assert fleet.status["shards"] == 4  # still routing by the old ring
    assert "cache-shard-4" in fleet.shard_statefulsets()  # the new shard exists first
    config = fleet.sidecar_config()
    assert config.warmup is None and len(config.ring.shards) == 4
    assert plan.requeue_after is not None

    fleet.reconcile()  # the new shard's StatefulSet is now observed, with a ready pod
    assert fleet.phase == "Shadowing"
    assert "ShadowingStarted" in reasons(fleet)
    warm = fleet.status["warmUp"]
    assert (warm["step"], warm["percent"]) == (0, 1.0)
    config = fleet.sidecar_config()
    assert config.warmup is not None and config.warmup.phase == "shadow"
    assert config.warmup.shadow_percent == 1.0
    # The sidecars count what they measure under the change's id, the next ring's version.
    assert config.warmup.change_id == f"v{fleet.status['warmUp']['toRing']['version']}"
    assert config.warmup.next_ring is not None and len(config.warmup.next_ring.shards) == 5
    assert config.ring.model_dump() == old_ring["assignment"]
    assert fleet.plans[-1].requeue_after == 60

    fleet.advance(30)
    fleet.reconcile()
    assert fleet.status["warmUp"]["percent"] == 1.0
    assert fleet.plans[-1].requeue_after == 30

    for percent in (5.0, 25.0, 50.0, 100.0):
        fleet.advance(30)
        fleet.reconcile()
        assert fleet.status["warmUp"]["percent"] == percent
        assert fleet.sidecar_config().warmup.shadow_percent == percent  # type: ignore[union-attr]
        assert "ShadowStep" in reasons(fleet)
        fleet.advance(30)
        fleet.reconcile()

    # Ramp complete, but nothing measured: keep shadowing and look again soon.
    fleet.advance(60)
    fleet.reconcile()
    assert fleet.phase == "Shadowing"
    fleet.hit_ratio = 0.5
    fleet.reconcile()
    assert fleet.phase == "Shadowing"

    fleet.hit_ratio = 0.93
    fleet.reconcile()
    assert fleet.phase == "Grace"
    assert "CutOver" in reasons(fleet)
    warm = fleet.status["warmUp"]
    assert warm["cutoverReason"] == "HitRatioReached"
    assert warm["cutoverHitRatio"] == 0.93
    assert fleet.status["shards"] == 5
    assert fleet.status["ring"]["version"] == 2
    config = fleet.sidecar_config()
    assert config.warmup is not None and config.warmup.phase == "grace"
    assert config.warmup.previous_ring.model_dump() == old_ring["assignment"]  # type: ignore[union-attr]
    assert len(config.ring.shards) == 5
    assert fleet.plans[-1].requeue_after == 300

    fleet.advance(299)
    fleet.reconcile()
    assert fleet.phase == "Grace"
    fleet.advance(1)
    fleet.reconcile()
    # Nothing to remove on a scale-up: finalizing completes at once.
    assert fleet.phase == "Stable"
    assert reasons(fleet) == ["Draining", "Finalizing", "WarmUpComplete"]
    assert "warmUp" not in fleet.status
    config = fleet.sidecar_config()
    assert config.warmup is None and len(config.ring.shards) == 5
    assert config.config_version.startswith("2-")
    progressing = fleet.condition("Progressing")
    assert progressing["status"] == "False"

    writes = fleet.writes
    plan = fleet.reconcile()
    assert fleet.writes == writes, "an idle resync after the change wrote something"
    assert plan.events == [] and plan.requeue_after is None


def test_scale_down_deletes_the_removed_shard_only_after_the_final_config_is_live() -> None:
    fleet = settled(5)
    fleet.edit(shards=4)
    fleet.reconcile()
    assert fleet.status["warmUp"]["removedShards"] == ["shard-4"]
    fleet.reconcile()
    assert fleet.phase == "Shadowing"
    fleet.hit_ratio = 1.0
    for _ in range(5):
        fleet.advance(60)
        fleet.reconcile()
    assert fleet.phase == "Grace"
    assert "cache-shard-4" in fleet.shard_statefulsets()
    assert all(plan.delete == [] for plan in fleet.plans)

    fleet.advance(300)
    plan = fleet.reconcile()
    assert fleet.phase == "Finalizing"
    assert plan.delete == [], "deleted a shard before sidecars had the final ring"
    assert "shard-4" not in {s.name for s in fleet.sidecar_config().shards}

    plan = fleet.reconcile()
    assert {(ref.kind, ref.name) for ref in plan.delete} == {
        ("StatefulSet", "cache-shard-4"),
        ("Service", "cache-shard-4"),
    }
    assert fleet.phase == "Finalizing"
    plan = fleet.reconcile()
    assert fleet.phase == "Stable"
    assert fleet.shard_statefulsets() == [f"cache-shard-{i}" for i in range(4)]
    assert fleet.status["shards"] == 4


def test_removed_shards_wait_for_every_sidecar_to_run_the_final_config() -> None:
    fleet = settled(5)
    fleet.edit(shards=4)
    fleet.hit_ratio = 1.0
    reconcile_until(fleet, "Grace", every=60)
    grace_version = fleet.sidecar_config().config_version
    fleet.sidecars = {"app-1:7": grace_version, "app-2:7": grace_version}
    fleet.advance(300)
    fleet.reconcile()
    assert fleet.phase == "Draining"
    drain_version = fleet.sidecar_config().config_version
    fleet.sidecars = {"app-1:7": drain_version, "app-2:7": drain_version}
    fleet.reconcile()
    assert fleet.phase == "Finalizing"
    final = fleet.sidecar_config().config_version
    assert final not in (grace_version, drain_version)
    fleet.sidecars["app-1:7"] = final
    for _ in range(3):  # the final config is live, but app-2 still runs the drain one
        fleet.advance(10)
        plan = fleet.reconcile()
        assert plan.delete == [] and "cache-shard-4" in fleet.shard_statefulsets()
        assert plan.requeue_after is not None and plan.requeue_after <= 5
    progressing = next(c for c in fleet.status["conditions"] if c["type"] == "Progressing")
    assert "1 sidecars do not run the final config yet" in progressing["message"]
    fleet.sidecars["app-2:7"] = final
    plan = fleet.reconcile()
    assert {ref.name for ref in plan.delete} == {"cache-shard-4"}


def test_a_sidecar_that_never_catches_up_is_waited_for_a_bounded_time() -> None:
    fleet = settled(5)
    fleet.edit(shards=4)
    fleet.hit_ratio = 1.0
    reconcile_until(fleet, "Grace", every=60)
    fleet.sidecars = {"stuck:1": "an-old-version"}
    fleet.advance(300)
    fleet.reconcile()
    fleet.reconcile()
    assert fleet.phase == "Draining"
    fleet.advance(121)
    plan = fleet.reconcile()
    assert fleet.phase == "Finalizing" and plan.delete == []
    [lagging] = [e for e in plan.events if e.reason == "SidecarsLagging"]
    assert lagging.type == "Warning" and "stuck:1" in lagging.message
    assert "may read a value replaced since" in lagging.message
    fleet.reconcile()
    assert fleet.phase == "Finalizing" and fleet.plans[-1].delete == []
    fleet.advance(121)
    plan = fleet.reconcile()
    assert {ref.name for ref in plan.delete} == {"cache-shard-4"}
    [lagging] = [e for e in plan.events if e.reason == "SidecarsLagging"]
    assert lagging.type == "Warning" and "stuck:1" in lagging.message


def test_draining_ends_only_once_every_sidecar_has_left_grace() -> None:
    """A sidecar still in grace reads a moved key's previous owner on a miss; the final config
    stops cleaning that owner, so it is published only once no sidecar is in grace."""
    fleet = settled(4)
    old_ring = fleet.status["ring"]
    fleet.edit(shards=5)
    fleet.hit_ratio = 1.0
    reconcile_until(fleet, "Grace", every=60)
    grace_version = fleet.sidecar_config().config_version
    fleet.sidecars = {"app-1:7": grace_version, "app-2:7": grace_version}
    fleet.advance(300)
    plan = fleet.reconcile()
    assert fleet.phase == "Draining"
    assert plan.requeue_after is not None and plan.requeue_after <= SIDECAR_POLL_SECONDS
    config = fleet.sidecar_config()
    assert config.warmup is not None and config.warmup.phase == "drain"
    assert config.warmup.previous_ring.model_dump() == old_ring["assignment"]  # type: ignore[union-attr]
    assert len(config.ring.shards) == 5
    drain_version = config.config_version
    fleet.sidecars["app-1:7"] = drain_version
    for _ in range(3):  # app-2 is still in grace
        fleet.advance(10)
        plan = fleet.reconcile()
        assert fleet.phase == "Draining"
        assert fleet.sidecar_config().config_version == drain_version
    progressing = fleet.condition("Progressing")
    assert progressing["reason"] == "Draining"
    assert "1 sidecars do not run the draining config yet" in progressing["message"]
    fleet.sidecars["app-2:7"] = drain_version
    fleet.reconcile()
    assert fleet.phase == "Stable"  # a scale-up removes nothing: finalizing completes at once
    assert fleet.sidecar_config().warmup is None


def test_ramp_timeout_cuts_over_and_says_so() -> None:
    fleet = settled(4, warmUp={**WARM_UP, "timeoutSeconds": 600})
    fleet.edit(shards=5)
    fleet.reconcile()
    fleet.reconcile()
    fleet.hit_ratio = 0.2
    started = fleet.now
    while fleet.phase == "Shadowing":
        fleet.advance(fleet.plans[-1].requeue_after or 5)
        fleet.reconcile()
        assert (fleet.now - started).total_seconds() <= 600
    assert fleet.phase == "Grace"
    assert (fleet.now - started).total_seconds() == 600
    warm = fleet.status["warmUp"]
    assert warm["cutoverReason"] == "Timeout"
    [event] = [e for e in fleet.plans[-1].events if e.reason == "CutOverTimeout"]
    assert event.type == "Warning" and "hit ratio 0.20" in event.message


def test_warm_up_disabled_cuts_over_directly_but_still_adds_first_and_removes_last() -> None:
    fleet = settled(3, warmUp={"enabled": False})
    fleet.edit(shards=2)
    plan = fleet.reconcile()  # nothing to add: provisioned at once, cut over at once
    assert fleet.phase == "Finalizing"
    assert fleet.status["warmUp"]["cutoverReason"] == "WarmUpDisabled"
    assert plan.delete == []
    assert fleet.sidecar_config().warmup is None
    assert len(fleet.sidecar_config().ring.shards) == 2
    plan = fleet.reconcile()
    assert [ref.name for ref in plan.delete] == ["cache-shard-2", "cache-shard-2"]
    fleet.reconcile()
    assert fleet.phase == "Stable"

    fleet.edit(shards=4)
    fleet.reconcile()
    assert fleet.shard_statefulsets() == [f"cache-shard-{i}" for i in range(4)]
    assert len(fleet.sidecar_config().ring.shards) == 2  # not routed before they exist
    fleet.reconcile()
    assert fleet.phase == "Stable"
    assert len(fleet.sidecar_config().ring.shards) == 4


def test_shadowing_waits_for_ready_new_shards_unless_told_not_to() -> None:
    fleet = settled(2)
    fleet.pods_ready = False
    fleet.edit(shards=3)
    for _ in range(3):
        fleet.reconcile()
        fleet.advance(5)
    assert fleet.phase == "Provisioning"
    assert fleet.condition("Ready")["status"] == "True"  # the routing ring's shards are fine
    assert fleet.condition("Progressing")["message"] == (
        "2 → 3 shards (33.3% of keys move): waiting for new shards shard-2"
    )
    fleet.set_ready(True)
    fleet.reconcile()
    assert fleet.phase == "Shadowing"

    eager = settled(2, warmUp={**WARM_UP, "waitForReadyShards": False})
    eager.pods_ready = False
    eager.edit(shards=3)
    eager.reconcile()
    eager.reconcile()
    assert eager.phase == "Shadowing"


def test_a_change_during_a_warm_up_is_queued_then_planned() -> None:
    fleet = settled(4)
    fleet.edit(shards=5)
    fleet.reconcile()
    fleet.reconcile()
    to_ring = copy.deepcopy(fleet.status["warmUp"]["toRing"])
    fleet.edit(shards=6)
    fleet.reconcile()
    assert fleet.status["warmUp"]["toRing"] == to_ring
    assert fleet.status["pendingChange"].startswith("6 shards")
    [queued] = [e for e in fleet.plans[-1].events if e.reason == "ChangeQueued"]
    assert queued.type == "Warning"
    assert "queued" in fleet.condition("Progressing")["message"]
    assert "cache-shard-5" not in fleet.shard_statefulsets()
    fleet.advance(10)
    fleet.reconcile()
    assert "ChangeQueued" not in reasons(fleet)  # said once, not on every resync

    fleet.hit_ratio = 1.0
    reconcile_until(fleet, "Stable")
    assert fleet.status["shards"] == 5
    fleet.reconcile()
    assert fleet.phase == "Provisioning"
    assert fleet.status["warmUp"]["fromShards"] == 5
    assert fleet.status["warmUp"]["toShards"] == 6
    assert "pendingChange" not in fleet.status


def test_the_planned_ring_is_the_persisted_ring_changed_by_plan_change() -> None:
    fleet = settled(4, weights={"shard-1": 2})
    before = RingAssignment.model_validate(fleet.status["ring"]["assignment"]).to_ring()
    fleet.edit(shards=5, weights={"shard-1": 2, "shard-4": 3})
    fleet.reconcile()
    expected = plan_change(
        before,
        [
            Shard("shard-0"),
            Shard("shard-1", 2),
            Shard("shard-2"),
            Shard("shard-3"),
            Shard("shard-4", 3),
        ],
        160,
    )
    planned = RingAssignment.model_validate(fleet.status["warmUp"]["toRing"]["assignment"])
    assert planned.to_ring() == expected
    assert fleet.status["warmUp"]["toRing"]["version"] == 2


def test_reweighting_alone_is_a_capacity_change() -> None:
    fleet = settled(4)
    fleet.edit(weights={"shard-0": 2})
    plan = fleet.reconcile()
    assert fleet.phase == "Shadowing"  # no shard to create: warming starts at once
    [change] = [e for e in plan.events if e.reason == "CapacityChange"]
    assert change.message == "reweighting 4 shards: 15.0% of keys move"
    assert fleet.status["shardStatuses"][0]["share"] == 0.25


def test_nothing_shadows_or_cuts_over_before_leftovers_of_an_earlier_ring_are_deleted() -> None:
    for warm_up in (dict(WARM_UP), {"enabled": False}):
        fleet = settled(5, warmUp=warm_up)
        fleet.leftovers = None  # no shard could be reached
        fleet.edit(shards=4)
        for _ in range(3):
            fleet.reconcile()
            fleet.advance(5)
        assert fleet.phase == "Provisioning"
        config = fleet.sidecar_config()
        assert config.warmup is None and len(config.ring.shards) == 5  # the active ring only
        progressing = fleet.condition("Progressing")["message"]
        assert progressing.endswith(": deleting the keys that shards hold from an earlier ring"), (
            progressing
        )

        fleet.leftovers = LeftoverSweep(
            done=False,
            scanned=1000,
            deleted=12,
            observed_at=fleet.now,
            waiting_on="shard-2 (cache-shard-2:6379): Connection refused",
        )
        plan = fleet.reconcile()
        assert fleet.phase == "Provisioning"
        assert plan.requeue_after == POLL_SECONDS  # a shard cannot be reached: not every 0.5 s
        assert fleet.condition("Progressing")["message"].endswith(
            ": deleting the keys that shards hold from an earlier ring: 1000 scanned, "
            "12 deleted; cannot scan shard-2 (cache-shard-2:6379): Connection refused"
        )
        [blocked] = [e for e in plan.events if e.reason == "LeftoverSweepBlocked"]
        assert blocked.type == "Warning"
        assert blocked.message.startswith(
            "cannot scan shard-2 (cache-shard-2:6379): Connection refused; the change waits"
        )
        fleet.advance(5)
        assert "LeftoverSweepBlocked" not in [e.reason for e in fleet.reconcile().events]

        fleet.leftovers = LeftoverSweep(done=True, scanned=2000, deleted=40, observed_at=fleet.now)
        plan = fleet.reconcile()
        assert fleet.phase == ("Shadowing" if warm_up.get("enabled", True) else "Finalizing")
        [swept] = [e for e in plan.events if e.reason == "LeftoversDeleted"]
        assert swept.message == (
            "deleted 40 keys that shards held from an earlier ring and get back on ring "
            f"v{fleet.status['warmUp']['toRing']['version']}"
        )
        said = reasons(fleet)
        next_step = "ShadowingStarted" if warm_up.get("enabled", True) else "CutOver"
        assert said.index("LeftoversDeleted") < said.index(next_step), said


def test_a_sweep_that_deleted_nothing_says_nothing() -> None:
    fleet = settled(5)
    fleet.leftovers = LeftoverSweep(done=True, scanned=5000, deleted=0, observed_at=fleet.now)
    fleet.edit(shards=4)
    plan = fleet.reconcile()
    assert fleet.phase == "Shadowing"
    assert "LeftoversDeleted" not in [e.reason for e in plan.events]
    assert "ShadowingStarted" in [e.reason for e in plan.events]


def test_the_sweep_begins_only_once_every_sidecar_runs_the_provisioning_config() -> None:
    fleet = settled(5)
    current = fleet.sidecar_config().config_version  # the active ring alone, as Provisioning has
    fleet.sidecars = {"app-0": current, "app-1": "1-an-older-config"}
    fleet.edit(shards=4)
    plan = fleet.reconcile()
    assert fleet.phase == "Provisioning"
    assert fleet.sidecar_config().config_version == current
    assert "sweepStartedAt" not in fleet.status["warmUp"]
    assert plan.requeue_after == SIDECAR_POLL_SECONDS
    assert fleet.condition("Progressing")["message"].endswith(
        ": waiting for 1 sidecars to run the current config before deleting the keys that "
        "shards hold from an earlier ring"
    )
    fleet.advance(60)
    fleet.reconcile()
    assert "sweepStartedAt" not in fleet.status["warmUp"]

    fleet.sidecars = {"app-0": current, "app-1": current}  # it picked the config up
    fleet.leftovers = None  # the sweep has just begun: nothing to report yet
    started = fleet.now
    fleet.reconcile()
    assert fleet.phase == "Provisioning"
    assert fleet.status["warmUp"]["sweepStartedAt"] == rfc3339(started)
    assert fleet.plans[-1].requeue_after == SWEEP_POLL_SECONDS


def test_a_sidecar_that_never_runs_the_provisioning_config_holds_the_sweep_120_s_at_most() -> None:
    fleet = settled(5)
    fleet.sidecars = {"app-1": "1-an-older-config"}
    fleet.edit(shards=4)
    started = fleet.now
    fleet.reconcile()
    reconcile_until(fleet, "Shadowing", every=5)
    assert (fleet.now - started).total_seconds() == SIDECAR_WAIT_SECONDS
    lagging = [e for plan in fleet.plans[-2:] for e in plan.events if e.reason == "SidecarsLagging"]
    assert len(lagging) == 1 and lagging[0].type == "Warning"
    assert "app-1" in lagging[0].message and "deleting leftovers" in lagging[0].message


def test_without_grace_draining_still_waits_for_the_sidecars() -> None:
    """graceSeconds 0: the turn that cuts over also ends Grace, with the sidecars' reports
    measured against the shadow config; Draining must wait to see them run its own."""
    fleet = settled(4, warmUp={**WARM_UP, "graceSeconds": 0})
    fleet.edit(shards=5)
    fleet.hit_ratio = None  # hold the ramp at 100% until the sidecar runs that config
    reconcile_until(fleet, "Shadowing", every=60)
    while fleet.status["warmUp"]["percent"] < 100:
        fleet.sidecars = {"app-1:7": fleet.sidecar_config().config_version}
        fleet.advance(60)
        fleet.reconcile()
    fleet.sidecars = {"app-1:7": fleet.sidecar_config().config_version}  # the last published
    fleet.hit_ratio = 1.0
    fleet.advance(60)
    fleet.reconcile()
    assert fleet.phase == "Draining"
    assert fleet.status["warmUp"]["cutoverReason"] == "HitRatioReached"
    config = fleet.sidecar_config()
    assert config.warmup is not None and config.warmup.phase == "drain"
    fleet.advance(5)
    fleet.reconcile()
    assert fleet.phase == "Draining"  # app-1 still reports the shadow config
    fleet.sidecars = {"app-1:7": config.config_version}
    fleet.reconcile()
    assert fleet.phase == "Stable"


def test_unreadable_sidecar_reports_are_waited_out_like_a_lagging_sidecar() -> None:
    fleet = settled(5)
    fleet.edit(shards=4)
    fleet.sidecars = None  # the shards holding the reports do not answer
    fleet.reconcile()
    fleet.advance(5)
    fleet.reconcile()
    assert fleet.phase == "Provisioning" and "sweepStartedAt" not in fleet.status["warmUp"]
    assert (
        "waiting to read which config the sidecars run" in fleet.condition("Progressing")["message"]
    )
    fleet.sidecars = {}
    fleet.hit_ratio = 1.0
    reconcile_until(fleet, "Grace", every=60)
    fleet.sidecars = None
    fleet.advance(300)
    fleet.reconcile()
    assert fleet.phase == "Draining"
    started = fleet.now
    for _ in range(3):
        fleet.advance(30)
        plan = fleet.reconcile()
        assert fleet.phase == "Draining"
        assert plan.requeue_after is not None and plan.requeue_after <= SIDECAR_POLL_SECONDS
    assert (
        "cannot read yet which config the sidecars run" in fleet.condition("Progressing")["message"]
    )
    fleet.advance(SIDECAR_WAIT_SECONDS - (fleet.now - started).total_seconds())
    plan = fleet.reconcile()
    assert fleet.phase == "Finalizing" and plan.delete == []
    [lagging] = [e for e in plan.events if e.reason == "SidecarsLagging"]
    assert "could not read which config the sidecars run for 120 s" in lagging.message
    fleet.reconcile()
    assert fleet.phase == "Finalizing" and fleet.plans[-1].delete == []  # the same for removal
    fleet.advance(SIDECAR_WAIT_SECONDS)
    plan = fleet.reconcile()
    assert {ref.name for ref in plan.delete} == {"cache-shard-4"}
    [lagging] = [e for e in plan.events if e.reason == "SidecarsLagging"]
    assert "removing shard-4 anyway" in lagging.message


def test_nothing_is_copied_before_every_sidecar_invalidates_on_the_next_ring() -> None:
    """Shadowing starts at 0%: writes of moved keys delete them on their next owner, nothing is
    copied there. A sidecar still on the Provisioning config writes the active owner alone, so
    a copy taken by another sidecar just before such a write would keep the replaced value: the
    first copies wait until every sidecar runs the 0% config."""
    fleet = settled(4)
    provisioning = fleet.sidecar_config().config_version
    fleet.sidecars = {"app-1:7": provisioning, "app-2:7": provisioning}
    fleet.edit(shards=5)
    fleet.reconcile()
    plan = fleet.reconcile()
    assert fleet.phase == "Shadowing"
    assert fleet.status["warmUp"]["percent"] == 0.0
    assert "ShadowingStarted" in reasons(fleet) and "ShadowStep" not in reasons(fleet)
    assert plan.requeue_after is not None and plan.requeue_after <= SIDECAR_POLL_SECONDS
    config = fleet.sidecar_config()
    assert config.warmup is not None and config.warmup.phase == "shadow"
    assert config.warmup.shadow_percent == 0.0
    invalidating = config.config_version
    fleet.sidecars["app-1:7"] = invalidating
    fleet.advance(60)
    fleet.reconcile()
    assert fleet.status["warmUp"]["percent"] == 0.0  # app-2 still runs the Provisioning config
    assert fleet.condition("Progressing")["message"].endswith(
        "copies begin once every sidecar does; 1 sidecars do not run the shadow config yet"
    )
    fleet.sidecars["app-2:7"] = invalidating
    fleet.reconcile()
    warm = fleet.status["warmUp"]
    assert (warm["step"], warm["percent"]) == (0, 1.0)
    assert warm["stepStartedAt"] == rfc3339(fleet.now)  # the first step is held in full
    assert reasons(fleet) == ["ShadowStep"]
    assert fleet.plans[-1].requeue_after == 60


def test_a_sidecar_that_never_invalidates_holds_the_first_copies_120_s_at_most() -> None:
    fleet = settled(4)
    fleet.sidecars = {"stuck:1": "an-old-version"}
    fleet.edit(shards=5)
    reconcile_until(fleet, "Shadowing", every=5)  # the sweep waits its own 120 s first
    assert fleet.status["warmUp"]["percent"] == 0.0
    started = fleet.now
    while fleet.status["warmUp"]["percent"] == 0.0:
        fleet.advance(fleet.plans[-1].requeue_after or 5)
        fleet.reconcile()
    assert (fleet.now - started).total_seconds() == SIDECAR_WAIT_SECONDS
    [lagging] = [e for e in fleet.plans[-1].events if e.reason == "SidecarsLagging"]
    assert "stuck:1" in lagging.message and "copying anyway" in lagging.message


def test_the_sweep_waits_its_120_s_from_when_it_can_begin_not_from_the_plan() -> None:
    """New shards may take minutes to come up; the wait for a lagging sidecar starts only when
    the sweep could otherwise begin."""
    fleet = settled(4)
    fleet.pods_ready = False
    fleet.sidecars = {"app-1": "1-an-older-config"}
    fleet.edit(shards=5)
    fleet.reconcile()
    for _ in range(6):
        fleet.advance(60)
        fleet.reconcile()
    assert "sidecarWaitStartedAt" not in fleet.status["warmUp"]  # still waiting for the shard
    fleet.set_ready(True)
    fleet.reconcile()
    ready = fleet.now
    assert fleet.status["warmUp"]["sidecarWaitStartedAt"] == rfc3339(ready)
    reconcile_until(fleet, "Shadowing", every=5)
    assert (fleet.now - ready).total_seconds() == SIDECAR_WAIT_SECONDS
    # The first copies wait for it again, from now.
    assert fleet.status["warmUp"]["sidecarWaitStartedAt"] == rfc3339(fleet.now)
