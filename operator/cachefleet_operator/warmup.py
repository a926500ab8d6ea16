"""The warm-up state machine of a capacity change, one pure step at a time.

    Provisioning ─► Shadowing (ramp) ─► cut-over ─► Grace ─► Draining ─► Finalizing ─► (Stable)
          └──────────── warmUp.enabled: false ──────────────────────────────┘

Provisioning ends once the new shards are ready, every sidecar runs the Provisioning config
(the active ring alone), and then the keys that shards hold from an earlier ring are deleted
(leftovers.py): every way out of it shadows or cuts over.

Shadowing begins at 0%: writes of moved keys delete them on their next owner, and nothing is
copied there yet. The ramp's first step waits until every sidecar runs that config: a sidecar
still on the Provisioning config writes the active owner alone, so a copy another sidecar
took just before such a write would keep the value it replaced.

Draining ends once every sidecar runs the Draining config: a sidecar still in Grace reads a
moved key's previous owner on a miss, so until none is, every write must still clean that
owner, which the Draining config does and the final one does not.

The three waits for sidecars (the sweep, shadowing's first copies, the end of Draining) are
each bounded by SIDECAR_WAIT_SECONDS from the moment they begin (``sidecarWaitStartedAt``).

Every fact the machine needs is in the WarmUpStatus (persisted) or in WarmUpFacts (observed
this time), and time comes only from ``now``. So a reconciler killed at any point and started
again computes the same next state from status alone. A step that takes time records when it
started; a step never lasts less than its duration, even after a long outage of the operator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cachefleet_operator.api import WarmUpStatus
from cachefleet_operator.api.spec import WarmUpSpec
from cachefleet_operator.api.status import CutoverReason, WarmUpPhase
from cachefleet_operator.clock import rfc3339, seconds_since
from cachefleet_operator.plan import EventSpec, LeftoverSweep

# How often to look again while waiting on the outside world (pods, the hit ratio, deletions).
POLL_SECONDS = 5.0
# The leftover sweep works in slices of a turn each; the next slice should follow promptly.
SWEEP_POLL_SECONDS = 0.5
# How long a step waits for sidecars to run the config it needs before it goes on anyway (a
# sidecar that cannot load a config would otherwise hold every change forever).
SIDECAR_WAIT_SECONDS = 120.0
# Sidecars report a new config within a tick of applying it: look again soon while waiting.
SIDECAR_POLL_SECONDS = 1.0
MAX_TRANSITIONS = 10


@dataclass(frozen=True)
class WarmUpFacts:
    """What the reconciler observed that the machine depends on."""

    # Every added shard's StatefulSet exists (and has a ready pod, if the spec asks for it).
    new_shards_ready: bool
    # No StatefulSet or Service of a removed shard is left.
    removed_shards_gone: bool
    hit_ratio: float | None
    # By the phase that waits for them: the sidecars heard from recently that run another
    # config than the one it waits for (Provisioning: the active ring alone; Shadowing: the
    # shadow config at 0%; Draining: its own). A phase missing, or None: not known this turn
    # (the reports could not be read).
    lagging_sidecars: Mapping[WarmUpPhase, tuple[str, ...] | None] = field(default_factory=dict)
    # How far the deletion of keys shards hold from an earlier ring has come (None: nothing
    # swept this turn).
    leftovers: LeftoverSweep | None = None


@dataclass(frozen=True)
class Advance:
    warm_up: WarmUpStatus | None
    events: list[EventSpec] = field(default_factory=list)
    requeue_after: float | None = None


def step_seconds(config: WarmUpSpec) -> int:
    if config.ramp_seconds is not None:
        return max(1, math.ceil(config.ramp_seconds / len(config.steps)))
    return config.step_seconds


def advance(state: WarmUpStatus, config: WarmUpSpec, facts: WarmUpFacts, now: datetime) -> Advance:
    """Take every transition that is due now; say when to look again."""
    events: list[EventSpec] = []
    current: WarmUpStatus | None = state
    for _ in range(MAX_TRANSITIONS):
        if current is None:
            return Advance(None, events, None)
        after, new_events, wait = _step(current, config, facts, now)
        events += new_events
        if after == current:
            return Advance(current, events, wait)
        current = after
    return Advance(current, events, POLL_SECONDS)


def _step(
    state: WarmUpStatus, config: WarmUpSpec, facts: WarmUpFacts, now: datetime
) -> tuple[WarmUpStatus | None, list[EventSpec], float | None]:
    if state.phase == "Provisioning":
        return _provisioning(state, config, facts, now)
    if state.phase == "Shadowing":
        return _shadowing(state, config, facts, now)
    if state.phase == "Grace":
        remaining = config.grace_seconds - seconds_since(state.phase_started_at, now)
        if remaining > 0:
            return state, [], remaining
        after = state.model_copy(update={"phase": "Draining", "phase_started_at": rfc3339(now)})
        message = (
            f"grace over: ring v{state.to_ring.version} alone answers reads; writes still "
            "delete moved keys on their old owners until every sidecar has left grace"
        )
        return after, [EventSpec("Normal", "Draining", message)], None
    if state.phase == "Draining":
        return _draining(state, facts, now)
    # Finalizing: the reconciler deletes removed shards once the final ConfigMap is live.
    if not facts.removed_shards_gone:
        return state, [], POLL_SECONDS
    message = (
        f"{state.from_shards} → {state.to_shards} shards complete: "
        f"ring v{state.to_ring.version} is the only ring"
    )
    return None, [EventSpec("Normal", "WarmUpComplete", message)], None


def _provisioning(
    state: WarmUpStatus, config: WarmUpSpec, facts: WarmUpFacts, now: datetime
) -> tuple[WarmUpStatus | None, list[EventSpec], float | None]:
    if not facts.new_shards_ready:
        return state, [], POLL_SECONDS
    if state.sweep_started_at is None:
        return _start_sweep(state, facts, now)
    sweep = facts.leftovers
    if sweep is None or not sweep.done:
        blocked = sweep is not None and sweep.waiting_on is not None
        return state, [], POLL_SECONDS if blocked else SWEEP_POLL_SECONDS
    swept: list[EventSpec] = []
    if sweep.deleted:
        swept.append(
            EventSpec(
                "Normal",
                "LeftoversDeleted",
                f"deleted {sweep.deleted} keys that shards held from an earlier ring "
                f"and get back on ring v{state.to_ring.version}",
            )
        )
    if not config.enabled:
        after, events, wait = _cut_over(state, "WarmUpDisabled", facts.hit_ratio, now, config)
        return after, [*swept, *events], wait
    stamp = rfc3339(now)
    after = state.model_copy(
        update={
            "phase": "Shadowing",
            "phase_started_at": stamp,
            "step": 0,
            "step_started_at": stamp,
            "percent": 0.0,
        }
    )
    message = (
        f"shadowing to ring v{state.to_ring.version} ({state.to_shards} shards): writes of "
        "moved keys delete them there; copies begin once every sidecar does"
    )
    return after, [*swept, EventSpec("Normal", "ShadowingStarted", message)], None


def _start_sweep(
    state: WarmUpStatus, facts: WarmUpFacts, now: datetime
) -> tuple[WarmUpStatus | None, list[EventSpec], float | None]:
    """The sweep is complete only if no sidecar still writes by an older ring, which could put
    a leftover back behind it: it begins once every sidecar runs the Provisioning config, or
    after SIDECAR_WAIT_SECONDS with a Warning naming those that do not."""
    state, wait, events = _wait_for_sidecars(
        state,
        facts,
        now,
        "Provisioning",
        "deleting leftovers of earlier rings anyway: one of them may write a key back to a "
        "shard that will own it",
    )
    if wait is not None:
        return state, [], wait
    return state.model_copy(update={"sweep_started_at": rfc3339(now)}), events, None


def _wait_for_sidecars(
    state: WarmUpStatus, facts: WarmUpFacts, now: datetime, gate: WarmUpPhase, anyway: str
) -> tuple[WarmUpStatus, float | None, list[EventSpec]]:
    """The state (which records when the wait began), how long to wait for the sidecars
    lagging behind the config ``gate`` waits for (None: go on), and the Warning that says what
    going on without them risks (``anyway``) once they were waited for SIDECAR_WAIT_SECONDS.
    Not knowing which config they run is waited out the same way. The wait is timed from its
    own start, not the phase's: Provisioning may spend minutes on new shards first."""
    lagging = facts.lagging_sidecars.get(gate)
    if lagging is not None and not lagging:
        return state.model_copy(update={"sidecar_wait_started_at": None}), None, []
    started = state.sidecar_wait_started_at or rfc3339(now)
    state = state.model_copy(update={"sidecar_wait_started_at": started})
    patience = SIDECAR_WAIT_SECONDS - seconds_since(started, now)
    if patience > 0:
        return state, min(max(patience, 1.0), SIDECAR_POLL_SECONDS), []
    warning = EventSpec("Warning", "SidecarsLagging", lagging_message(lagging, anyway))
    return state.model_copy(update={"sidecar_wait_started_at": None}), None, [warning]


def lagging_message(lagging: Sequence[str] | None, anyway: str) -> str:
    """What a SidecarsLagging Warning says: who lags (None: the reports could not be read)."""
    if lagging is None:
        return (
            f"could not read which config the sidecars run for {SIDECAR_WAIT_SECONDS:g} s; {anyway}"
        )
    shown = ", ".join(lagging[:3]) + (", …" if len(lagging) > 3 else "")
    return (
        f"{len(lagging)} sidecars still reported another config after "
        f"{SIDECAR_WAIT_SECONDS:g} s ({shown}); {anyway}"
    )


def _shadowing(
    state: WarmUpStatus, config: WarmUpSpec, facts: WarmUpFacts, now: datetime
) -> tuple[WarmUpStatus | None, list[EventSpec], float | None]:
    to_timeout = config.timeout_seconds - seconds_since(state.phase_started_at, now)
    if to_timeout <= 0:
        return _cut_over(state, "Timeout", facts.hit_ratio, now, config)
    if state.percent == 0:  # the steps are above 0: this is the wait before any copy
        state, wait, events = _wait_for_sidecars(
            state,
            facts,
            now,
            "Shadowing",
            "copying anyway: a copy may keep a value that one of them replaces meanwhile",
        )
        if wait is not None:
            return state, [], min(wait, to_timeout)
        percent = config.steps[0]
        after = state.model_copy(
            update={"step": 0, "step_started_at": rfc3339(now), "percent": percent}
        )
        first = EventSpec("Normal", "ShadowStep", f"shadowing {percent:g}% of requests")
        return after, [*events, first], None
    duration = step_seconds(config)
    step_started = state.step_started_at or state.phase_started_at
    to_step_end = duration - seconds_since(step_started, now)
    last = len(config.steps) - 1
    step = min(state.step, last)
    if to_step_end > 0:
        return state, [], min(to_step_end, to_timeout)
    if step < last:
        percent = config.steps[step + 1]
        after = state.model_copy(
            update={"step": step + 1, "step_started_at": rfc3339(now), "percent": percent}
        )
        return (
            after,
            [EventSpec("Normal", "ShadowStep", f"shadowing {percent:g}% of requests")],
            None,
        )
    ratio = facts.hit_ratio
    if ratio is not None and ratio >= config.cutover_hit_ratio:
        return _cut_over(state, "HitRatioReached", ratio, now, config)
    return state, [], min(POLL_SECONDS, to_timeout)


def _cut_over(
    state: WarmUpStatus,
    reason: CutoverReason,
    ratio: float | None,
    now: datetime,
    config: WarmUpSpec,
) -> tuple[WarmUpStatus | None, list[EventSpec], float | None]:
    stamp = rfc3339(now)
    version = state.to_ring.version
    seen = "unknown" if ratio is None else f"{ratio:.2f}"
    if reason == "HitRatioReached":
        event = EventSpec(
            "Normal",
            "CutOver",
            f"cut over to ring v{version}: hit ratio {seen} ≥ {config.cutover_hit_ratio:.2f}",
        )
    elif reason == "Timeout":
        event = EventSpec(
            "Warning",
            "CutOverTimeout",
            f"cut over to ring v{version} after the {config.timeout_seconds}s warm-up "
            f"timeout: hit ratio {seen}, wanted {config.cutover_hit_ratio:.2f}",
        )
    else:
        event = EventSpec(
            "Normal",
            "CutOver",
            f"cut over to ring v{version} without warm-up (spec.warmUp.enabled is false)",
        )
    update: dict[str, object] = {
        "cutover_reason": reason,
        "cutover_at": stamp,
        "cutover_hit_ratio": None if ratio is None else round(ratio, 4),
        "percent": 100.0 if reason != "WarmUpDisabled" else 0.0,
    }
    if reason == "WarmUpDisabled":
        after, events, wait = _finalizing(state.model_copy(update=update), now)
        return after, [event, *events], wait
    after = state.model_copy(update={**update, "phase": "Grace", "phase_started_at": stamp})
    return after, [event], None


def _draining(
    state: WarmUpStatus, facts: WarmUpFacts, now: datetime
) -> tuple[WarmUpStatus | None, list[EventSpec], float | None]:
    state, wait, events = _wait_for_sidecars(
        state,
        facts,
        now,
        "Draining",
        "dropping the previous ring anyway: one still in grace may read a value replaced "
        "since from an old owner",
    )
    if wait is not None:
        return state, [], wait
    after, finalizing, wait = _finalizing(state, now)
    return after, [*events, *finalizing], wait


def _finalizing(
    state: WarmUpStatus, now: datetime
) -> tuple[WarmUpStatus | None, list[EventSpec], float | None]:
    after = state.model_copy(update={"phase": "Finalizing", "phase_started_at": rfc3339(now)})
    removing = f"; removing {', '.join(state.removed_shards)}" if state.removed_shards else ""
    message = f"ring v{state.to_ring.version} is now the only ring{removing}"
    return after, [EventSpec("Normal", "Finalizing", message)], None
