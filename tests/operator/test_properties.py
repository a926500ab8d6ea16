"""Random edits, clock jumps, lost reconciles and pod readiness flips: the invariants hold.

- The sidecars are never pointed at a shard whose StatefulSet and Service do not exist.
- A shard is never deleted while the live sidecar config (or the one being applied) names it.
- status.shards is the size of the ring the sidecars route by.
- Left alone with ready pods and warm shards, every cluster settles to Stable on the spec's
  shards and weights, and then a resync writes nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from cachefleet.config import SidecarConfig
from cachefleet_operator.plan import ReconcilePlan
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.operator.fleet import Fleet, cache_cluster

SIDECAR = ("ConfigMap", "cache-sidecar")

edit = st.one_of(
    st.tuples(st.just("shards"), st.integers(1, 7)),
    st.tuples(
        st.just("weights"),
        st.dictionaries(
            st.sampled_from([f"shard-{i}" for i in range(4)]), st.sampled_from([1, 2, 3])
        ),
    ),
    st.tuples(st.just("invalid"), st.just({"shard-0": 0})),
    st.tuples(st.just("warm-up"), st.booleans()),
)
action = st.one_of(
    st.tuples(st.just("edit"), edit),
    st.tuples(st.just("wait"), st.sampled_from([0, 1, 5, 30, 61, 400])),
    st.tuples(st.just("hit"), st.sampled_from([None, 0.3, 0.95])),
    st.tuples(st.just("ready"), st.booleans()),
    st.tuples(st.just("lost"), st.none()),
    st.tuples(st.just("reconcile"), st.none()),
)


def _config_shards(manifest: dict[str, Any] | None) -> set[str]:
    if manifest is None:
        return set()
    config = SidecarConfig.model_validate(json.loads(manifest["data"]["sidecar.json"]))
    rings = [config.ring]
    if config.warmup is not None:
        rings += [r for r in (config.warmup.next_ring, config.warmup.previous_ring) if r]
    return {s.name for ring in rings for s in ring.shards}


def _apply_edit(fleet: Fleet, change: tuple[str, Any]) -> None:
    kind, value = change
    spec = fleet.cluster["spec"]
    if kind == "shards":
        spec["shards"] = value
        spec["weights"] = {k: w for k, w in spec.get("weights", {}).items() if int(k[6:]) < value}
    elif kind == "weights":
        spec["weights"] = {k: w for k, w in value.items() if int(k[6:]) < spec["shards"]}
    elif kind == "invalid":
        spec["weights"] = dict(value)
    else:
        spec["warmUp"] = {**spec["warmUp"], "enabled": value}
    fleet.cluster["metadata"]["generation"] += 1


def _warming(manifest: dict[str, Any] | None) -> set[str]:
    """Shards that the next ring adds, while shadowing."""
    if manifest is None:
        return set()
    config = SidecarConfig.model_validate(json.loads(manifest["data"]["sidecar.json"]))
    if config.warmup is None or config.warmup.next_ring is None:
        return set()
    return {s.name for s in config.warmup.next_ring.shards} - {s.name for s in config.ring.shards}


def _checked_reconcile(fleet: Fleet, lost: bool = False) -> None:
    before = copy.deepcopy(fleet.children.get(SIDECAR))
    observed = copy.deepcopy(fleet.children)
    plan = fleet.plan()
    applied_config = next(
        (
            m
            for m in plan.apply
            if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "cache-sidecar"
        ),
        None,
    )
    for shard in _warming(applied_config) - _warming(before):
        live = observed.get(("StatefulSet", f"cache-{shard}"))
        ready = live is not None and live["status"]["readyReplicas"] >= 1
        assert ready, f"started shadowing to {shard} before it had a ready pod"
    named = _config_shards(before) | _config_shards(applied_config)
    for ref in plan.delete:
        if ref.kind in ("StatefulSet", "Service") and "-shard-" in ref.name:
            shard = ref.name.removeprefix("cache-")
            assert shard not in named, f"deleted {shard} while a sidecar config names it"
    if lost:
        plan = ReconcilePlan(apply=plan.apply, create_if_absent=plan.create_if_absent)
    fleet.carry_out(plan)
    fleet.plans.append(plan)
    for shard in _config_shards(fleet.children.get(SIDECAR)):
        for kind in ("StatefulSet", "Service"):
            assert (kind, f"cache-{shard}") in fleet.children, f"config names {shard}, no {kind}"
    status = fleet.status
    if "ring" in status and not lost:
        routing = SidecarConfig.model_validate(
            json.loads(fleet.children[SIDECAR]["data"]["sidecar.json"])
        ).ring
        assert status["shards"] == len(routing.shards)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(action, min_size=1, max_size=25))
# Found by this test: a lone shard's new weight changes no share, and the ring kept the old
# weight, so the operator saw a change it could never finish.
@example(actions=[("edit", ("shards", 1)), ("edit", ("weights", {"shard-0": 2}))])
def test_random_histories_keep_the_invariants_and_settle(actions: list[tuple[str, Any]]) -> None:
    fleet = Fleet(
        cache_cluster(
            shards=3, warmUp={"stepSeconds": 30, "graceSeconds": 60, "timeoutSeconds": 600}
        )
    )
    _checked_reconcile(fleet)
    for kind, value in actions:
        if kind == "edit":
            _apply_edit(fleet, value)
        elif kind == "wait":
            fleet.advance(value)
        elif kind == "hit":
            fleet.hit_ratio = value
        elif kind == "ready":
            fleet.set_ready(value)
        _checked_reconcile(fleet, lost=kind == "lost")

    # Left alone: valid spec, ready pods, warm shards, time passing.
    spec = fleet.cluster["spec"]
    spec["weights"] = {k: w for k, w in spec.get("weights", {}).items() if w > 0}
    fleet.set_ready(True)
    fleet.hit_ratio = 1.0
    for _ in range(60):
        _checked_reconcile(fleet)
        if fleet.phase == "Stable" and "pendingChange" not in fleet.status:
            shards = fleet.status["ring"]["assignment"]["shards"]
            wanted = [
                {
                    "name": f"shard-{i}",
                    "weight": float(spec.get("weights", {}).get(f"shard-{i}", 1)),
                }
                for i in range(spec["shards"])
            ]
            if shards == wanted:
                break
        fleet.advance(fleet.plans[-1].requeue_after or 30)
    else:
        warm = fleet.status.get("warmUp") or {}
        raise AssertionError(f"never settled: {fleet.phase}, {warm.get('phase')}")
    assert fleet.shard_statefulsets() == [f"cache-shard-{i}" for i in range(spec["shards"])]
    writes = fleet.writes
    _checked_reconcile(fleet)
    assert fleet.writes == writes, "a settled cluster's resync wrote something"
