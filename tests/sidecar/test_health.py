"""The health policy's rules, with time passed in: no sockets, no sleeping."""

from __future__ import annotations

import random

import pytest
from cachefleet.config import HealthConfig
from cachefleet.sidecar.health import (
    GRAY_FACTOR,
    MAX_EJECTION_SECONDS,
    Cause,
    HealthPolicy,
    State,
)

NAMES = ["s0", "s1", "s2", "s3"]


def policy(**config: int) -> HealthPolicy:
    settings = HealthConfig(check_interval_ms=1000, **config)
    return HealthPolicy(settings, NAMES, now=0.0, rng=random.Random(1))


def state(health: HealthPolicy, name: str) -> State:
    return health.shards[name].state


def test_a_hard_failure_ejects_at_once_and_the_backoff_grows_with_jitter() -> None:
    health = policy()
    change = health.hard_failure("s0", Cause.CONNECTION, "connection refused", 10.0)
    assert change is not None and change.state == State.EJECTED
    assert change.cause == Cause.CONNECTION and change.reason == "connection refused"
    first = health.shards["s0"].probe_at - 10.0
    assert 0.8 <= first <= 1.2
    assert health.probes_due(10.5) == []
    assert health.probes_due(11.3) == ["s0"]
    health.probe_failed("s0", "connection refused", hard=True, now=11.3)
    second = health.shards["s0"].probe_at - 11.3
    assert 1.6 <= second <= 2.4
    now = 11.3
    for _ in range(10):
        now = health.shards["s0"].probe_at
        health.probe_failed("s0", "still down", hard=True, now=now)
    assert health.shards["s0"].probe_at - now <= MAX_EJECTION_SECONDS * 1.2
    assert state(health, "s0") == State.EJECTED


def test_soft_failures_eject_after_the_configured_count_and_a_success_resets_it() -> None:
    health = policy(eject_after_failures=3)
    assert health.probe_failed("s1", "no reply within 1000 ms", hard=False, now=1.0) is None
    assert health.probe_failed("s1", "no reply within 1000 ms", hard=False, now=2.0) is None
    health.probe_succeeded("s1", 0.001, 3.0)  # resets the count
    assert health.probe_failed("s1", "timeout", hard=False, now=4.0) is None
    assert health.probe_failed("s1", "timeout", hard=False, now=5.0) is None
    change = health.probe_failed("s1", "timeout", hard=False, now=6.0)
    assert change is not None and change.state == State.EJECTED and change.cause == Cause.PROBE
    assert "3 failed probes in a row" in change.reason


def test_probes_readmit_through_recovering() -> None:
    health = policy()
    health.hard_failure("s2", Cause.TIMEOUT, "no reply within 1000 ms", 0.0)
    too_early = health.probe_succeeded("s2", 0.001, 0.5)
    assert too_early is None and state(health, "s2") == State.EJECTED
    change = health.probe_succeeded("s2", 0.001, 2.0)
    assert change is not None and change.state == State.RECOVERING
    assert health.recovered("s2", 2.1) is not None
    assert state(health, "s2") == State.HEALTHY


def test_a_failed_recovery_ejects_again_for_longer() -> None:
    health = policy()
    health.hard_failure("s0", Cause.CONNECTION, "lost", 0.0)
    health.probe_succeeded("s0", 0.001, 2.0)
    change = health.recovery_failed("s0", "gutter unreachable", 2.1)
    assert change is not None and change.state == State.EJECTED
    assert change.cause == Cause.RECOVERY
    assert health.shards["s0"].probe_at - 2.1 >= 1.6


def test_the_streak_restarts_after_a_long_healthy_spell() -> None:
    health = policy()
    health.hard_failure("s0", Cause.CONNECTION, "lost", 0.0)
    health.probe_succeeded("s0", 0.001, 5.0)
    health.recovered("s0", 5.0)
    health.hard_failure("s0", Cause.CONNECTION, "lost", 6.0)  # flapping: longer
    assert health.shards["s0"].probe_at - 6.0 >= 1.6
    health.probe_succeeded("s0", 0.001, 20.0)
    health.recovered("s0", 20.0)
    health.hard_failure("s0", Cause.CONNECTION, "lost", 20.0 + MAX_EJECTION_SECONDS + 1)
    assert health.shards["s0"].probe_at - (20.0 + MAX_EJECTION_SECONDS + 1) <= 1.2


def test_the_ejection_cap_keeps_failing_shards_in_the_ring() -> None:
    health = policy(max_ejection_percent=50)  # 2 of 4
    assert health.max_ejected == 2
    health.hard_failure("s0", Cause.CONNECTION, "lost", 0.0)
    health.hard_failure("s1", Cause.CONNECTION, "lost", 0.0)
    change = health.hard_failure("s2", Cause.CONNECTION, "lost", 0.0)
    assert change is not None and change.state == State.FAILING
    assert "cap is 50%" in change.reason
    assert sorted(health.out_of_ring()) == ["s0", "s1"]
    # A slot frees up: the failing shard's next failure ejects it.
    health.probe_succeeded("s0", 0.001, 2.0)
    health.recovered("s0", 2.0)
    change = health.hard_failure("s2", Cause.CONNECTION, "lost", 2.5)
    assert change is not None and change.state == State.EJECTED
    # A failing shard that answers again is simply healthy.
    health.hard_failure("s3", Cause.CONNECTION, "lost", 3.0)
    assert state(health, "s3") == State.FAILING
    health.probe_succeeded("s3", 0.001, 3.5)
    assert state(health, "s3") == State.HEALTHY


@pytest.mark.parametrize(("percent", "shards", "cap"), [(0, 4, 0), (10, 4, 1), (50, 5, 2)])
def test_the_cap_is_at_least_one_unless_zero(percent: int, shards: int, cap: int) -> None:
    settings = HealthConfig(max_ejection_percent=percent)
    health = HealthPolicy(settings, [f"s{i}" for i in range(shards)], 0.0)
    assert health.max_ejected == cap
    if cap == 0:
        change = health.hard_failure("s0", Cause.CONNECTION, "lost", 0.0)
        assert change is not None and change.state == State.FAILING


def feed(health: HealthPolicy, name: str, seconds: float, now: float, count: int = 50) -> None:
    health.round_trips(name, [seconds] * count, now)


def test_a_gray_failure_is_ejected_as_slow() -> None:
    health = policy(slow_threshold_ms=100)
    for name in ("s0", "s1", "s2"):
        feed(health, name, 0.0005, 1.0)
    feed(health, "s3", 0.3, 1.0)
    health.probe_succeeded("s3", 0.28, 1.2)
    changes = health.judge_latency(1.5)
    assert [(c.name, c.state, c.cause) for c in changes] == [("s3", State.EJECTED, Cause.SLOW)]
    assert "p99 301 ms" in changes[0].reason  # 300 ms, read from its 25%-wide bucket
    assert "its last probe 280 ms" in changes[0].reason
    # It must also answer its probe fast before it comes back.
    later = health.shards["s3"].probe_at
    again = health.probe_succeeded("s3", 0.3, later)
    assert again is not None and again.state == State.EJECTED and "still slow" in again.reason
    back = health.probe_succeeded("s3", 0.001, health.shards["s3"].probe_at)
    assert back is not None and back.state == State.RECOVERING


def test_a_slow_queue_in_front_of_a_fast_shard_is_not_a_gray_failure() -> None:
    # Large replies ahead in the pipeline make every round trip slow while the shard answers
    # its probe at once: the shard is not slow, its requests are.
    health = policy(slow_threshold_ms=100)
    for name in ("s0", "s1", "s2"):
        feed(health, name, 0.0005, 1.0)
        health.probe_succeeded(name, 0.0004, 1.2)
    feed(health, "s3", 0.3, 1.0)
    assert health.judge_latency(1.5) == []  # no probe answered yet: not confirmed
    health.probe_succeeded("s3", 0.002, 1.6)
    feed(health, "s3", 0.3, 1.7)
    assert health.judge_latency(2.0) == []
    assert state(health, "s3") == State.HEALTHY
    health.probe_succeeded("s3", 0.15, 2.1)  # now the shard itself answers slowly
    changes = health.judge_latency(2.5)
    assert [(c.name, c.cause) for c in changes] == [("s3", Cause.SLOW)]


def test_nobody_is_slow_when_everybody_is() -> None:
    health = policy(slow_threshold_ms=100)
    for i, name in enumerate(NAMES):
        feed(health, name, 0.3 + 0.05 * i, 1.0)
    assert health.judge_latency(1.5) == []
    assert all(state(health, n) == State.HEALTHY for n in NAMES)


def test_slow_needs_both_the_threshold_and_the_factor() -> None:
    health = policy(slow_threshold_ms=100)
    for name in ("s0", "s1", "s2"):
        feed(health, name, 0.002, 1.0)
    feed(health, "s3", 0.09, 1.0, count=200)  # 45x the others, but under the threshold
    health.probe_succeeded("s3", 0.5, 1.2)  # its probe is slow: only the p99 decides
    assert health.judge_latency(1.5) == []
    health = policy(slow_threshold_ms=100)
    for name in ("s0", "s1", "s2"):
        feed(health, name, 0.15, 1.0)
    feed(health, "s3", 0.15 * GRAY_FACTOR * 0.9, 1.0)  # over the threshold, under the factor
    health.probe_succeeded("s3", 0.5, 1.2)
    assert health.judge_latency(1.5) == []


def test_old_and_too_few_round_trips_decide_nothing() -> None:
    health = policy(slow_threshold_ms=100)
    for name in ("s0", "s1", "s2"):
        feed(health, name, 0.001, 1.0)
    feed(health, "s3", 0.5, 1.0, count=3)  # too few
    assert health.judge_latency(1.5) == []
    feed(health, "s3", 0.5, 1.0)
    assert health.judge_latency(10.0) == []  # all of them too old by now
    assert health.shards["s3"].p99 is None


def test_a_reload_keeps_the_state_of_shards_that_stay() -> None:
    health = policy()
    health.hard_failure("s0", Cause.CONNECTION, "lost", 0.0)
    health.set_shards(["s0", "s1", "s9"], 1.0)
    assert state(health, "s0") == State.EJECTED
    assert sorted(health.shards) == ["s0", "s1", "s9"]
    assert state(health, "s9") == State.HEALTHY
    assert health.hard_failure("gone", Cause.CONNECTION, "lost", 1.0) is None
