"""Parsing a raw spec: defaults people expect, and one error listing every problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cachefleet_operator.api import SpecError, parse_spec
from cachefleet_operator.api.spec import WarmUpSpec
from cachefleet_operator.naming import shard_names_for
from cachefleet_operator.ring_state import ring_status
from cachefleet_operator.warmup import WarmUpFacts, advance, step_seconds


def test_defaults() -> None:
    spec = parse_spec({"shards": 3})
    assert spec.redis.image == "redis:7.2"
    assert spec.redis.eviction_policy == "allkeys-lru"
    assert spec.replicas_per_shard == 0
    assert spec.persistence.enabled is False
    assert spec.auth.enabled is True and spec.auth.existing_secret is None
    assert (spec.ring.strategy, spec.ring.tokens_per_shard) == ("planned", 160)
    assert (spec.gutter.enabled, spec.gutter.size, spec.gutter.ttl_seconds) == (True, 1, 10)
    assert spec.warm_up.steps == [1, 5, 25, 50, 100]
    assert spec.warm_up.cutover_hit_ratio == 0.9
    assert (spec.sidecar.port, spec.sidecar.admin_port) == (6379, 9121)


def test_every_problem_is_listed_with_its_path() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(
            {
                "shards": 0,
                "redis": {"maxmemory": "lots", "evictionPolicy": "lru"},
                "gutter": {"ttlSeconds": 0},
                "colour": "blue",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 5
    assert any(p.startswith("spec.shards:") for p in problems)
    assert any(p.startswith("spec.redis.maxmemory:") for p in problems)
    assert any(p.startswith("spec.redis.evictionPolicy:") for p in problems)
    assert any(p.startswith("spec.gutter.ttlSeconds:") for p in problems)
    assert any(p.startswith("spec.colour:") for p in problems)
    assert "spec.shards" in str(caught.value)


def test_semantic_problems_are_listed_together() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(
            {
                "shards": 2,
                "weights": {"shard-0": 0, "db": 1},
                "redis": {"extraConfig": {"maxmemory": "1gb", "hz": "10\nrequirepass x"}},
                "auth": {"enabled": False, "existingSecret": {"name": "s"}},
            }
        )
    assert caught.value.problems == [
        "spec.weights.db: not a shard name (shards are named shard-0, shard-1, ...)",
        "spec.weights.shard-0: weight 0 must be greater than zero",
        "spec.redis.extraConfig.hz: the value must be one line",
        "spec.redis.extraConfig.maxmemory: managed by the operator, set it through the spec",
        "spec.auth.existingSecret: set, but spec.auth.enabled is false",
    ]


def test_a_missing_spec_is_a_problem_not_a_crash() -> None:
    with pytest.raises(SpecError, match="spec: missing"):
        parse_spec(None)


def test_shard_names_are_stable_fill_gaps_and_drop_the_highest() -> None:
    assert shard_names_for([], 3) == ["shard-0", "shard-1", "shard-2"]
    assert shard_names_for(["shard-0", "shard-2", "shard-3"], 4) == [
        "shard-0",
        "shard-1",
        "shard-2",
        "shard-3",
    ]
    assert shard_names_for(["shard-0", "shard-2", "shard-3"], 2) == ["shard-0", "shard-2"]
    assert shard_names_for(["shard-10", "shard-2"], 2) == ["shard-2", "shard-10"]


def test_ramp_seconds_sets_the_step_length() -> None:
    assert step_seconds(WarmUpSpec(steps=[10, 50, 100], ramp_seconds=100)) == 34
    assert step_seconds(WarmUpSpec(step_seconds=7)) == 7


def test_a_long_operator_outage_advances_one_ramp_step_at_a_time() -> None:
    from cachefleet.ring import Shard, planned_ring
    from cachefleet_operator.api import WarmUpStatus, parse_spec

    spec = parse_spec({"shards": 2})
    ring = ring_status(planned_ring([Shard("shard-0"), Shard("shard-1")]), 1, spec)
    state = WarmUpStatus(
        phase="Shadowing",
        from_shards=2,
        to_shards=2,
        moved_fraction=0.0,
        started_at="2026-11-26T12:00:00Z",
        phase_started_at="2026-11-26T12:00:00Z",
        step_started_at="2026-11-26T12:00:00Z",
        percent=1.0,
        from_ring=ring,
        to_ring=ring,
    )
    facts = WarmUpFacts(new_shards_ready=True, removed_shards_gone=True, hit_ratio=1.0)
    later = datetime(2026, 11, 26, 12, 0, tzinfo=UTC) + timedelta(seconds=900)
    step = advance(state, spec.warm_up, facts, later)
    assert step.warm_up is not None
    assert (step.warm_up.step, step.warm_up.percent) == (1, 5.0)
    assert step.warm_up.step_started_at == "2026-11-26T12:15:00Z"
    assert step.requeue_after == 60
