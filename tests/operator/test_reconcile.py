"""reconcile(): determinism, idle resyncs, invalid specs, and the ring carried across restarts."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cachefleet_operator.plan import APPLIED_HASH_ANNOTATION, ReconcilePlan

from tests.operator.fleet import Fleet, cache_cluster


def test_same_inputs_give_an_identical_plan() -> None:
    fleet = Fleet(cache_cluster(shards=3, weights={"shard-2": 2}))
    fleet.reconcile()
    fleet.edit(shards=4)
    assert fleet.plan() == fleet.plan()
    fleet.reconcile()
    assert fleet.plan() == fleet.plan()


def test_first_reconcile_creates_everything_and_the_second_writes_nothing() -> None:
    fleet = Fleet(cache_cluster(shards=3))
    plan = fleet.reconcile()
    kinds = sorted((m["kind"], m["metadata"]["name"]) for m in plan.apply)
    assert kinds == [
        ("ConfigMap", "cache-redis"),
        ("ConfigMap", "cache-sidecar"),
        ("PodDisruptionBudget", "cache-gutter"),
        ("PodDisruptionBudget", "cache-shards"),
        ("Service", "cache-gutter"),
        ("Service", "cache-shard-0"),
        ("Service", "cache-shard-1"),
        ("Service", "cache-shard-2"),
        ("StatefulSet", "cache-gutter"),
        ("StatefulSet", "cache-shard-0"),
        ("StatefulSet", "cache-shard-1"),
        ("StatefulSet", "cache-shard-2"),
    ]
    [secret] = plan.create_if_absent
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "cache-auth"
    assert secret["stringData"]["password"] == "generated-1"
    assert fleet.status["ring"]["version"] == 1
    assert fleet.status["readyShards"] == 0  # not observed yet
    fleet.reconcile()
    assert fleet.status["readyShards"] == 3

    writes = fleet.writes
    plan = fleet.reconcile()
    assert fleet.writes == writes
    assert plan.create_if_absent == []  # the Secret exists: its password never changes
    assert plan.delete == [] and plan.events == [] and plan.requeue_after is None
    for manifest in plan.apply:
        live = fleet.children[(manifest["kind"], manifest["metadata"]["name"])]
        assert (
            live["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
            == manifest["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
        )
    assert plan.status == fleet.status


def test_time_passing_alone_changes_nothing() -> None:
    fleet = Fleet(cache_cluster(shards=2))
    fleet.reconcile()
    fleet.reconcile()
    status = copy.deepcopy(fleet.status)
    fleet.advance(86_400)
    fleet.reconcile()
    assert fleet.status == status


def test_condition_transition_time_moves_only_when_the_status_does() -> None:
    fleet = Fleet(cache_cluster(shards=2), pods_ready=False)
    fleet.reconcile()
    first = fleet.condition("Ready")
    assert first["status"] == "False"
    fleet.advance(40)
    fleet.reconcile()
    assert fleet.condition("Ready") == first
    fleet.advance(20)
    fleet.set_ready(True)
    fleet.reconcile()
    ready = fleet.condition("Ready")
    assert ready["status"] == "True" and ready["lastTransitionTime"] == "2026-11-26T12:01:00Z"
    assert fleet.status["readyShards"] == 2
    assert fleet.condition("Degraded")["lastTransitionTime"] == "2026-11-26T12:00:00Z"


def test_per_shard_readiness_and_share_come_from_the_statefulsets_and_the_ring() -> None:
    fleet = Fleet(cache_cluster(shards=3, weights={"shard-0": 2}))
    fleet.reconcile()
    fleet.children[("StatefulSet", "cache-shard-1")]["status"] = {"readyReplicas": 0}
    plan = fleet.reconcile()
    shards = {s["name"]: s for s in fleet.status["shardStatuses"]}
    assert shards["shard-0"]["share"] == 0.5 and shards["shard-1"]["share"] == 0.25
    assert shards["shard-1"]["ready"] is False and shards["shard-2"]["ready"] is True
    assert fleet.status["readyShards"] == 2
    assert "shard-1" in fleet.condition("Ready")["message"]
    assert plan.requeue_after == 30.0


def test_the_ring_is_read_back_from_status_never_recomputed() -> None:
    fleet = Fleet(cache_cluster(shards=4))
    fleet.reconcile()
    ring = copy.deepcopy(fleet.status["ring"])
    # A "restarted operator" has only the object: children are listed again, the ring is not
    # planned again (a doctored assignment in status proves it is used as it is).
    restarted = Fleet(copy.deepcopy(fleet.cluster), now=fleet.now, children={})
    other = _other_ring()
    restarted.cluster["status"]["ring"]["assignment"] = other
    restarted.reconcile()
    assert restarted.status["ring"]["assignment"] == other
    assert other != ring["assignment"]
    assert restarted.sidecar_config().ring.model_dump() == other


def _other_ring() -> dict[str, Any]:
    from cachefleet.ring import RingAssignment, Shard, classic_ring

    shards = [Shard(f"shard-{i}") for i in range(4)]
    return RingAssignment.from_ring(classic_ring(shards, 7)).model_dump(mode="json")


def test_an_operator_killed_between_applying_and_writing_status_resumes_the_same_walk() -> None:
    """Every reconcile is preceded by a lost one: its children writes land, its status not."""

    def walk(lossy: bool) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
        fleet = Fleet(cache_cluster(shards=4, warmUp={"stepSeconds": 10, "graceSeconds": 20}))
        fleet.reconcile()
        fleet.edit(shards=6)
        fleet.hit_ratio = 0.95
        seen: list[tuple[str, Any]] = []
        for _ in range(40):
            if lossy:
                lost = fleet.plan()
                fleet.carry_out(
                    ReconcilePlan(apply=lost.apply, create_if_absent=lost.create_if_absent)
                )
            fleet.reconcile()
            step = (fleet.phase, (fleet.status.get("warmUp") or {}).get("percent"))
            if not seen or seen[-1] != step:
                seen.append(step)
            fleet.advance(5)
        assert fleet.phase == "Stable"
        return seen, fleet.status["ring"]

    clean, clean_ring = walk(lossy=False)
    lossy, lossy_ring = walk(lossy=True)
    # The lost reconciles created the new shards, so the lossy walk sees them at once.
    assert lossy == [step for step in clean if step[0] != "Provisioning"]
    assert [phase for phase, _ in clean] == [
        "Provisioning",
        "Shadowing",
        "Shadowing",
        "Shadowing",
        "Shadowing",
        "Shadowing",
        "Grace",
        "Stable",
    ]
    assert lossy_ring == clean_ring


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"weights": {"shard-1": 0}}, "spec.weights.shard-1: weight 0 must be greater than zero"),
        ({"weights": {"shard-1": -2}}, "spec.weights.shard-1: weight -2 must be greater than zero"),
        ({"weights": {"shard-9": 2}}, "spec.weights names shard-9, but the cluster's shards"),
        ({"weights": {"big": 2}}, "spec.weights.big: not a shard name"),
        ({"shards": 400}, "= 64000 tokens, more than the 60000"),
        ({"shards": 0}, "spec.shards: Input should be greater than or equal to 1"),
        ({"redis": {"extraConfig": {"requirepass": "x"}}}, "managed by the operator"),
        ({"warmUp": {"steps": [50, 10]}}, "spec.warmUp.steps: [50.0, 10.0] must strictly increase"),
    ],
)
def test_an_invalid_spec_changes_nothing_that_runs(edit: dict[str, Any], problem: str) -> None:
    fleet = Fleet(cache_cluster(shards=3))
    fleet.reconcile()
    children = copy.deepcopy(fleet.children)
    ring = copy.deepcopy(fleet.status["ring"])

    fleet.edit(**edit)
    plan = fleet.reconcile()
    assert fleet.children == children
    assert plan.delete == [] and plan.create_if_absent == []
    assert fleet.status["ring"] == ring
    degraded = fleet.condition("Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
    assert problem in degraded["message"]
    assert fleet.phase == "Degraded"
    [event] = plan.events
    assert event.type == "Warning" and problem in event.message
    assert fleet.status["observedGeneration"] == 2

    fleet.reconcile()
    assert fleet.plans[-1].events == [], "the same problem was announced twice"

    fleet.cluster["spec"] = {"shards": 3}
    plan = fleet.reconcile()
    assert fleet.condition("Degraded")["status"] == "False"
    assert fleet.phase == "Stable"
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "SpecValid")]


def test_an_invalid_first_spec_creates_nothing_and_says_why() -> None:
    fleet = Fleet(cache_cluster(shards=2, weights={"shard-7": 3}))
    plan = fleet.reconcile()
    assert plan.apply == [] and plan.create_if_absent == [] and plan.delete == []
    assert fleet.phase == "Degraded"
    assert "shard-7" in fleet.condition("Degraded")["message"]
    assert fleet.condition("Ready")["status"] == "False"
    fleet.cluster["spec"]["weights"] = {"shard-1": 3}
    fleet.reconcile()
    assert fleet.phase == "Stable"
    assert len(fleet.shard_statefulsets()) == 2


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("x" * 40, "metadata.name: 40 characters, at most 39"),
        ("cache.eu", "metadata.name: 'cache.eu' must be lowercase letters"),
        ("7cache", "metadata.name: '7cache' must be lowercase letters"),
    ],
)
def test_a_name_that_cannot_name_children_is_refused_before_anything_is_created(
    name: str, problem: str
) -> None:
    fleet = Fleet(cache_cluster(name=name, shards=2))
    plan = fleet.reconcile()
    assert plan.apply == []
    assert problem in fleet.condition("Degraded")["message"]


def test_an_invalid_spec_during_a_warm_up_lets_the_warm_up_finish() -> None:
    fleet = Fleet(cache_cluster(shards=2, warmUp={"stepSeconds": 1, "graceSeconds": 0}))
    fleet.reconcile()
    fleet.edit(shards=3)
    fleet.reconcile()
    fleet.edit(weights={"shard-1": 0})
    fleet.hit_ratio = 1.0
    for _ in range(10):
        fleet.advance(1)
        fleet.reconcile()
    assert fleet.phase == "Degraded"
    assert fleet.status["shards"] == 3
    assert len(fleet.sidecar_config().ring.shards) == 3


def test_children_no_longer_wanted_are_deleted() -> None:
    fleet = Fleet(cache_cluster(shards=2))
    fleet.reconcile()
    fleet.edit(gutter={"enabled": False}, scheduling={"podDisruptionBudget": {"enabled": False}})
    plan = fleet.reconcile()
    assert sorted((ref.kind, ref.name) for ref in plan.delete) == [
        ("PodDisruptionBudget", "cache-gutter"),
        ("PodDisruptionBudget", "cache-shards"),
        ("Service", "cache-gutter"),
        ("StatefulSet", "cache-gutter"),
    ]
    assert not fleet.sidecar_config().gutter.enabled


def test_only_children_owned_by_the_clusters_uid_are_deleted() -> None:
    fleet = Fleet(cache_cluster(shards=2))
    fleet.reconcile()
    labels = {"cachefleet.io/cluster": "cache"}
    # Created by Helm or an app with the cluster's label: listed, but not the operator's.
    fleet.children[("ConfigMap", "cache-app-settings")] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cache-app-settings", "labels": labels},
    }
    # Left by an earlier CacheCluster of the same name (another uid): not ours either.
    fleet.children[("Service", "cache-old")] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "cache-old",
            "labels": labels,
            "ownerReferences": [{"kind": "CacheCluster", "name": "cache", "uid": "uid-before"}],
        },
    }
    # Ours and no longer wanted: deleted.
    fleet.children[("Service", "cache-shard-9")] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "cache-shard-9",
            "labels": labels,
            "ownerReferences": [{"kind": "CacheCluster", "name": "cache", "uid": "uid-cache"}],
        },
    }
    plan = fleet.reconcile()
    assert [(ref.kind, ref.name) for ref in plan.delete] == [("Service", "cache-shard-9")]


def test_unreadable_status_touches_nothing() -> None:
    fleet = Fleet(cache_cluster(shards=2))
    fleet.reconcile()
    children = copy.deepcopy(fleet.children)
    fleet.cluster["status"]["ring"]["assignment"]["tokenCount"] = "many"
    fleet.cluster["status"]["ring"]["version"] = "one"
    plan = fleet.reconcile()
    assert plan.apply == [] and plan.delete == []
    assert fleet.children == children
    assert "status.ring.version" in fleet.condition("Degraded")["message"]
