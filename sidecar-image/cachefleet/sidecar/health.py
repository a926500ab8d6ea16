"""Shard health: when a shard is ejected, for how long, and when it may come back.

Pure logic: time comes in as arguments, so every rule is tested without sockets. ``monitor``
does the I/O (probes, passive failures, the re-admission clean-up) and applies what this
decides to the route table.

- A hard failure ejects at once (mcrouter's hard TKO): a refused, reset or lost connection, a
  connect timeout, or a request unanswered after ``requestTimeoutMs`` (an app already waited
  that long, and the connection is being dropped anyway).
- Soft failures (a probe that times out or answers an error) eject after
  ``ejectAfterFailures`` in a row; a probe that succeeds resets the count.
- A gray failure: a shard that answers, but whose recent p99 is above ``slowThresholdMs`` and
  at least ``GRAY_FACTOR`` times the median p99 of the other shards, and whose last probe (PING
  on a connection of its own) took longer than the threshold too. When every shard is slow the
  sidecar's own host is the likelier cause, so nobody is ejected for it. A passive round trip
  includes the queue in front of the shard (large replies ahead of it in the pipeline); when
  the probe answers fast the shard itself is not slow, its requests are, and the gutter would
  serve them no faster.
- An ejection lasts ``checkIntervalMs`` × 2^(ejections in a row − 1), at most
  ``MAX_EJECTION_SECONDS``, ±20% jitter so sidecars do not probe in step. Then one probe:
  success starts the re-admission (``RECOVERING``: the clean-up runs, then ``HEALTHY``),
  failure ejects it again for longer. A shard ejected as slow must also answer the probe
  faster than the threshold. The streak restarts after ``MAX_EJECTION_SECONDS`` healthy.
- At most ``max(1, ⌊shards × maxEjectionPercent / 100⌋)`` shards are out of the ring at once
  (none with 0%), like Envoy's ``max_ejection_percent``: when half the fleet looks down from one
  sidecar, its own host or network is the likelier cause, and the gutter (about 1% of the
  servers) could not carry half the keyspace anyway. A shard that fails beyond the cap stays in
  the ring (``FAILING``): its requests go to it and fail fast while it is down.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from cachefleet.config import HealthConfig
from cachefleet.sidecar.stats import HEALTH_BUCKETS, new_window

MAX_EJECTION_SECONDS = 10.0  # a shard back from an outage waits at most this (plus jitter)
JITTER = 0.2
GRAY_FACTOR = 4.0
MIN_SAMPLES = 5  # round trips needed before a p99 means anything
# Round trips older than this many check intervals are forgotten.
WINDOW_INTERVALS = 2


class State(StrEnum):
    HEALTHY = "healthy"
    FAILING = "failing"  # would be ejected, but the ejection cap is reached
    EJECTED = "ejected"
    RECOVERING = "recovering"  # its probe succeeded; the clean-up runs before re-admission


class Cause(StrEnum):
    """Why a shard was ejected, as a metric label."""

    CONNECTION = "connection"  # refused, reset, lost, connect timeout
    TIMEOUT = "timeout"  # a request unanswered after requestTimeoutMs
    PROBE = "probe"  # ejectAfterFailures failed probes in a row
    SLOW = "slow"  # a gray failure
    RECOVERY = "recovery"  # the re-admission clean-up failed


OUT_OF_RING = (State.EJECTED, State.RECOVERING)


@dataclass
class ShardHealth:
    name: str
    state: State = State.HEALTHY
    reason: str = ""
    cause: Cause | None = None
    since: float = 0.0  # when the state last changed (monotonic)
    out_since: float = 0.0  # when it last left the ring
    failures: int = 0  # soft failures in a row
    streak: int = 0  # ejections without a lasting recovery between them
    ejections: int = 0
    probe_at: float = 0.0  # ejected: when the next probe is due
    healthy_since: float = 0.0
    # (time, round trips counted per HEALTH_BUCKETS bucket) per look of the monitor
    samples: deque[tuple[float, list[int]]] = field(default_factory=deque)
    p50: float | None = None
    p99: float | None = None
    last_probe: float | None = None  # seconds


@dataclass(frozen=True)
class Transition:
    """A state change for the monitor to apply (and log)."""

    name: str
    state: State
    reason: str
    cause: Cause | None = None


def percentile(counts: Sequence[int], fraction: float) -> float:
    """The ``fraction`` quantile of round trips counted per ``HEALTH_BUCKETS`` bucket: the
    upper bound of the bucket it falls in (within 25%)."""
    total = sum(counts)
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return HEALTH_BUCKETS[min(index, len(HEALTH_BUCKETS) - 1)]
    return HEALTH_BUCKETS[-1]


def counted(seconds: Sequence[float]) -> list[int]:
    counts = new_window()
    for value in seconds:
        counts[bisect.bisect_left(HEALTH_BUCKETS, value)] += 1
    return counts


class HealthPolicy:
    def __init__(
        self,
        config: HealthConfig,
        names: Iterable[str],
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.shards: dict[str, ShardHealth] = {}
        self.set_shards(names, now)

    # -- configuration ---------------------------------------------------------------------

    def set_shards(self, names: Iterable[str], now: float) -> None:
        """The ring's shards after a reload: those that stay keep their state."""
        wanted = list(names)
        self.shards = {
            name: self.shards.get(name) or ShardHealth(name, since=now, healthy_since=now)
            for name in wanted
        }

    def configure(self, config: HealthConfig) -> None:
        self.config = config

    @property
    def interval(self) -> float:
        return self.config.check_interval_ms / 1000

    @property
    def max_ejected(self) -> int:
        percent = self.config.max_ejection_percent
        if percent <= 0:
            return 0
        return max(1, len(self.shards) * percent // 100)

    def out_of_ring(self) -> list[str]:
        return [s.name for s in self.shards.values() if s.state in OUT_OF_RING]

    # -- what happened -----------------------------------------------------------------------

    def hard_failure(self, name: str, cause: Cause, reason: str, now: float) -> Transition | None:
        shard = self.shards.get(name)
        if shard is None or shard.state in OUT_OF_RING:
            return None
        return self._eject(shard, cause, reason, now)

    def soft_failure(self, name: str, reason: str, now: float) -> Transition | None:
        shard = self.shards.get(name)
        if shard is None or shard.state in OUT_OF_RING:
            return None
        shard.failures += 1
        if shard.failures < self.config.eject_after_failures:
            return None
        reason = f"{shard.failures} failed probes in a row, the last: {reason}"
        return self._eject(shard, Cause.PROBE, reason, now)

    def probe_succeeded(self, name: str, seconds: float, now: float) -> Transition | None:
        """A probe answered in ``seconds``: an ejected shard whose probe was due starts its
        re-admission; a failing one is healthy again."""
        shard = self.shards.get(name)
        if shard is None:
            return None
        shard.last_probe = seconds
        if shard.state == State.EJECTED:
            if now < shard.probe_at:
                return None
            if shard.cause == Cause.SLOW and seconds * 1000 > self.config.slow_threshold_ms:
                reason = f"still slow: the probe took {seconds * 1000:.0f} ms"
                return self._eject(shard, Cause.SLOW, reason, now)
            return self._set(shard, State.RECOVERING, "probe answered; cleaning up", now)
        if shard.state in (State.HEALTHY, State.FAILING):
            shard.failures = 0
            self._add_samples(shard, counted([seconds]), now)
            if shard.state == State.FAILING:
                shard.healthy_since = now
                return self._set(shard, State.HEALTHY, "", now)
        return None

    def probe_failed(self, name: str, reason: str, hard: bool, now: float) -> Transition | None:
        """A probe failed: an ejected shard stays out for longer; others count it."""
        shard = self.shards.get(name)
        if shard is None:
            return None
        if shard.state == State.EJECTED:
            if now < shard.probe_at:
                return None
            return self._eject(shard, shard.cause or Cause.PROBE, f"probe failed: {reason}", now)
        if hard:
            return self.hard_failure(name, Cause.CONNECTION, reason, now)
        return self.soft_failure(name, reason, now)

    def round_trips(self, name: str, seconds: Sequence[float], now: float) -> None:
        """Round trips the shard's connections measured (passive latency)."""
        self.round_trip_counts(name, counted(seconds), now)

    def round_trip_counts(self, name: str, counts: list[int], now: float) -> None:
        """The same, already counted per ``HEALTH_BUCKETS`` bucket (what ``stats`` keeps)."""
        shard = self.shards.get(name)
        if shard is not None:
            self._add_samples(shard, counts, now)

    def judge_latency(self, now: float) -> list[Transition]:
        """Eject gray failures: slow against the threshold and against the other shards."""
        horizon = now - WINDOW_INTERVALS * max(self.interval, 0.5)
        p99s: dict[str, float] = {}
        for shard in self.shards.values():
            samples = shard.samples
            while samples and samples[0][0] < horizon:
                samples.popleft()
            merged = [sum(column) for column in zip(*(c for _, c in samples), strict=True)]
            if sum(merged) < MIN_SAMPLES:
                shard.p50 = shard.p99 = None
                continue
            shard.p50 = percentile(merged, 0.5)
            shard.p99 = percentile(merged, 0.99)
            if shard.state in (State.HEALTHY, State.FAILING):
                p99s[shard.name] = shard.p99
        threshold = self.config.slow_threshold_ms / 1000
        changes = []
        for name, p99 in sorted(p99s.items(), key=lambda item: -item[1]):
            others = [value for other, value in p99s.items() if other != name]
            if not others or p99 <= threshold:
                continue
            median = statistics.median(others)
            if p99 < GRAY_FACTOR * median:
                continue
            probe = self.shards[name].last_probe
            if probe is None or probe <= threshold:
                continue
            reason = (
                f"slow: p99 {p99 * 1000:.0f} ms (threshold {self.config.slow_threshold_ms} ms; "
                f"the other shards' median p99 {median * 1000:.1f} ms; "
                f"its last probe {probe * 1000:.0f} ms)"
            )
            change = self._eject(self.shards[name], Cause.SLOW, reason, now)
            if change is not None:
                changes.append(change)
        return changes

    def probes_due(self, now: float) -> list[str]:
        """Ejected shards whose ejection is over: probe them now."""
        return [
            s.name for s in self.shards.values() if s.state == State.EJECTED and now >= s.probe_at
        ]

    def recovered(self, name: str, now: float) -> Transition | None:
        shard = self.shards.get(name)
        if shard is None or shard.state != State.RECOVERING:
            return None
        shard.failures = 0
        shard.samples.clear()
        shard.healthy_since = now
        return self._set(shard, State.HEALTHY, "", now)

    def recovery_failed(self, name: str, reason: str, now: float) -> Transition | None:
        shard = self.shards.get(name)
        if shard is None or shard.state != State.RECOVERING:
            return None
        return self._eject(shard, Cause.RECOVERY, f"re-admission failed: {reason}", now)

    # -- the rules ---------------------------------------------------------------------------

    def _eject(
        self, shard: ShardHealth, cause: Cause, reason: str, now: float
    ) -> Transition | None:
        """Eject ``shard`` within the cap, or extend its ejection when it is out already."""
        if shard.state not in OUT_OF_RING:
            out = len(self.out_of_ring())
            if out >= self.max_ejected:
                shard.failures = 0
                why = (
                    f"{reason} (not ejected: {out} of {len(self.shards)} shards are out "
                    f"already, the cap is {self.config.max_ejection_percent}%)"
                )
                if shard.state == State.FAILING:
                    shard.reason = why
                    return None
                return self._set(shard, State.FAILING, why, now)
            if now - shard.healthy_since >= MAX_EJECTION_SECONDS:
                shard.streak = 0
            shard.out_since = now
        shard.streak += 1
        shard.ejections += 1
        shard.failures = 0
        shard.cause = cause
        backoff = min(self.interval * 2 ** (shard.streak - 1), MAX_EJECTION_SECONDS)
        shard.probe_at = now + backoff * self.rng.uniform(1 - JITTER, 1 + JITTER)
        shard.samples.clear()
        return self._set(shard, State.EJECTED, reason, now)

    def _set(self, shard: ShardHealth, state: State, reason: str, now: float) -> Transition:
        if state != shard.state:
            shard.since = now
        shard.state = state
        shard.reason = reason
        return Transition(shard.name, state, reason, shard.cause)

    def _add_samples(self, shard: ShardHealth, counts: list[int], now: float) -> None:
        shard.samples.append((now, counts))
