"""The reconciler: CacheCluster + what was observed → what to do. Pure: no API, no clock.

Rules it keeps:
- The ring in status is the truth: it is reused as it is, and a new one is planned from it
  (``plan_change``) only when the spec's shard set or weights differ from it.
- A capacity change runs the warm-up state machine (``warmup.py``); new shards' children are
  applied from the moment the change is planned, removed shards' children are deleted only
  after cut-over, grace, and once the live sidecar ConfigMap no longer names them.
- A spec that passes the schema but cannot work leaves every child exactly as it is: the
  children are rendered from the last valid spec (kept in ``status.appliedSpec``), so their
  hashes equal the live ones and nothing is written; a Degraded condition and a Warning Event
  say what is wrong.
- A capacity change asked for during a warm-up is queued: the running warm-up finishes
  unchanged, then the queued one is planned (``status.pendingChange`` says so meanwhile).
"""

from __future__ import annotations

from typing import Any

from cachefleet.config import WarmupConfig
from cachefleet.config.keys import change_id as ring_change_id
from pydantic import ValidationError

from cachefleet_operator.api import (
    CacheClusterSpec,
    CacheClusterStatus,
    Condition,
    RingStatus,
    ShardStatus,
    SpecError,
    WarmUpStatus,
    parse_spec,
)
from cachefleet_operator.api.status import WarmUpPhase
from cachefleet_operator.children.context import RenderContext
from cachefleet_operator.children.disruption_budget import disruption_budgets
from cachefleet_operator.children.gutter import gutter_children
from cachefleet_operator.children.redis_config import redis_config_map
from cachefleet_operator.children.secret import generated_secret
from cachefleet_operator.children.shard import shard_children
from cachefleet_operator.children.sidecar_config import (
    Routing,
    sidecar_config_map,
    sidecar_settings,
)
from cachefleet_operator.clock import rfc3339, seconds_since
from cachefleet_operator.conditions import condition, find
from cachefleet_operator.labels import Owner
from cachefleet_operator.manifest_hash import applied_hash, stamped
from cachefleet_operator.naming import (
    auth_secret,
    cluster_name_problem,
    shard_number,
    shard_workload,
    sidecar_config,
)
from cachefleet_operator.plan import (
    ChildRef,
    EventSpec,
    LeftoverSweep,
    Manifest,
    Observed,
    ReconcilePlan,
)
from cachefleet_operator.ring_state import (
    WeightError,
    desired_shards,
    first_ring,
    next_ring,
    ring_names,
)
from cachefleet_operator.warmup import (
    SIDECAR_POLL_SECONDS,
    SIDECAR_WAIT_SECONDS,
    WarmUpFacts,
    advance,
    lagging_message,
)

# The phases that wait for every sidecar to run a config, and the status that renders it.
SIDECAR_GATES: dict[WarmUpPhase, dict[str, object]] = {
    "Provisioning": {"phase": "Provisioning"},  # the active ring alone, for the sweep
    "Shadowing": {"phase": "Shadowing", "percent": 0.0},  # invalidations before copies
    "Draining": {"phase": "Draining"},  # no sidecar left in grace
}

# Kinds the operator renders; only these are ever deleted as no longer desired.
MANAGED_KINDS = frozenset({"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget"})
# While shards are not ready, look again now and then so status follows them.
READINESS_POLL_SECONDS = 30.0


def reconcile(cluster: dict[str, Any], observed: Observed) -> ReconcilePlan:
    meta = cluster.get("metadata") or {}
    owner = Owner(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace") or "default"),
        uid=str(meta.get("uid", "")),
    )
    live, status_problem = _read_status(cluster.get("status"))
    problems: list[str] = []
    events: list[EventSpec] = []

    spec: CacheClusterSpec | None = None
    try:
        spec = parse_spec(cluster.get("spec"))
    except SpecError as error:
        problems += error.problems
    name_problem = cluster_name_problem(owner.name)
    if name_problem is not None:
        problems.append(name_problem)
        spec = None
    if status_problem is not None:
        # Planning from an unreadable ring would compute a different ring: touch nothing.
        problems.append(status_problem)
        spec = None

    ring = live.ring
    warm = live.warm_up
    pending: str | None = None
    if spec is not None:
        target = warm.to_ring if warm is not None else ring
        try:
            shards = desired_shards(spec, ring_names(target) if target else [])
        except WeightError as error:
            problems.append(str(error))
            spec = None
        else:
            wanted = [(s.name, float(s.weight)) for s in shards]
            if ring is None:
                ring = first_ring(spec, shards)
            elif warm is None and _weights(ring) != wanted:
                planned = next_ring(spec, ring, shards)
                warm = _start_change(ring, planned, observed)
                events.append(EventSpec("Normal", "CapacityChange", _change_message(warm)))
            elif warm is not None and _weights(warm.to_ring) != wanted:
                pending = (
                    f"{len(shards)} shards with weights "
                    f"{_weight_text(wanted)} after the change in progress"
                )

    effective = spec if spec is not None else _applied_spec(live)
    if effective is None or ring is None:
        return _nothing_to_run(cluster, owner, live, problems, observed)

    context = RenderContext(owner, effective)
    requeue: float | None = None
    lagging_by_gate: dict[WarmUpPhase, list[str] | None] = {}
    if warm is not None:
        # Each phase that waits for the sidecars, against the config it waits for (measured
        # for all of them, so a turn that walks into one already knows who lags there).
        for gate, update in SIDECAR_GATES.items():
            config = sidecar_settings(context, _routing(ring, warm.model_copy(update=update))[0])
            lagging_by_gate[gate] = _lagging_sidecars(config.config_version, observed)
        facts = WarmUpFacts(
            new_shards_ready=_shards_ready(
                context, warm.added_shards, observed, effective.warm_up.wait_for_ready_shards
            ),
            removed_shards_gone=not any(
                (kind, shard_workload(owner.name, shard)) in observed.children
                for shard in warm.removed_shards
                for kind in ("StatefulSet", "Service")
            ),
            hit_ratio=observed.warmup.hit_ratio if observed.warmup else None,
            lagging_sidecars={
                gate: None if lag is None else tuple(lag) for gate, lag in lagging_by_gate.items()
            },
            leftovers=observed.leftovers,
        )
        step = advance(warm, effective.warm_up, facts, observed.now)
        events += step.events
        requeue = step.requeue_after
        if step.warm_up is None:
            ring = warm.to_ring
        warm = step.warm_up

    routing, shard_set = _routing(ring, warm)
    settings = sidecar_settings(context, routing)
    config_map = stamped(sidecar_config_map(context, settings))
    lagging: list[str] | None = []
    if warm is not None and warm.phase in lagging_by_gate:
        lagging = lagging_by_gate[warm.phase]
    if warm is not None and warm.phase == "Finalizing":
        live_config = observed.children.get(("ConfigMap", sidecar_config(owner.name)))
        lagging = _lagging_sidecars(settings.config_version, observed)
        patience = SIDECAR_WAIT_SECONDS - seconds_since(warm.phase_started_at, observed.now)
        # Lagging or unknown: those that never report (or whose reports cannot be read) are
        # waited for SIDECAR_WAIT_SECONDS at most.
        unsure = lagging is None or bool(lagging)
        if applied_hash(live_config) != applied_hash(config_map) or (unsure and patience > 0):
            # Sidecars may still route to a removed shard until they run the final config.
            shard_set = sorted({*shard_set, *warm.removed_shards}, key=shard_number)
            if unsure:
                requeue = min(requeue or patience, max(patience, 1.0), SIDECAR_POLL_SECONDS)
        elif unsure and warm.removed_shards:
            anyway = f"removing {', '.join(warm.removed_shards)} anyway"
            events.append(EventSpec("Warning", "SidecarsLagging", lagging_message(lagging, anyway)))

    manifests: list[Manifest] = [redis_config_map(context)]
    for shard in shard_set:
        manifests += shard_children(context, shard)
    manifests += gutter_children(context)
    manifests += disruption_budgets(context)
    apply = [stamped(m) for m in manifests] + [config_map]

    create: list[Manifest] = []
    secret = generated_secret(context, observed.generated_password)
    if secret is not None and ("Secret", auth_secret(owner.name)) not in observed.children:
        create.append(secret)

    desired = {(m["kind"], m["metadata"]["name"]) for m in apply}
    delete = [
        ChildRef(str(child.get("apiVersion", "v1")), kind, name)
        for (kind, name), child in sorted(observed.children.items())
        if kind in MANAGED_KINDS and (kind, name) not in desired and _ours(child, owner)
    ]

    shard_statuses = _shard_statuses(owner, shard_set, ring if warm is None else routing, observed)
    routing_names = [s.name for s in routing.ring.shards]
    ready = [s.name for s in shard_statuses if s.ready and s.name in routing_names]
    if requeue is None and len(ready) < len(routing_names):
        requeue = READINESS_POLL_SECONDS

    waiting = [s.name for s in shard_statuses if warm and s.name in warm.added_shards]
    if warm is not None and effective.warm_up.wait_for_ready_shards:
        waiting = [s.name for s in shard_statuses if s.name in waiting and not s.ready]
    conditions = [
        _ready_condition(routing_names, ready, live, observed),
        _progressing_condition(warm, pending, ring, waiting, lagging, live, observed),
        _degraded_condition(problems, live, observed),
    ]
    events += _condition_events(problems, conditions, live)
    events += _sweep_blocked_events(warm, observed, live)
    if pending is not None and pending != live.pending_change:
        events.append(EventSpec("Warning", "ChangeQueued", f"queued: {pending}"))

    phase = warm.phase if warm is not None else ("Degraded" if problems else "Stable")
    moved = live.moved_percent
    if warm is not None:
        moved = round(warm.moved_fraction * 100, 2)
    status = CacheClusterStatus(
        phase=phase,
        observed_generation=meta.get("generation"),
        shards=len(routing_names),
        ready_shards=len(ready),
        moved_percent=moved,
        shard_statuses=shard_statuses,
        ring=ring if warm is None else _routing_ring(warm),
        warm_up=warm,
        pending_change=pending,
        applied_spec=effective.dump(),
        conditions=conditions,
    )
    return ReconcilePlan(
        apply=apply,
        create_if_absent=create,
        delete=delete,
        status=status.dump(),
        events=events,
        requeue_after=requeue,
    )


# -- reading -------------------------------------------------------------------------------


def _read_status(raw: Any) -> tuple[CacheClusterStatus, str | None]:
    if not raw:
        return CacheClusterStatus(), None
    known = {k: v for k, v in dict(raw).items() if k in _STATUS_KEYS}
    try:
        return CacheClusterStatus.model_validate(known), None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return CacheClusterStatus(), f"status.{where}: unreadable ({first['msg']})"


_STATUS_KEYS = frozenset(
    field.alias or name for name, field in CacheClusterStatus.model_fields.items()
)


def _applied_spec(live: CacheClusterStatus) -> CacheClusterSpec | None:
    if live.applied_spec is None:
        return None
    try:
        return CacheClusterSpec.model_validate(live.applied_spec)
    except ValidationError:
        return None


def _weights(ring: RingStatus) -> list[tuple[str, float]]:
    return [(s.name, float(s.weight)) for s in ring.assignment.shards]


def _weight_text(weights: list[tuple[str, float]]) -> str:
    uneven = [f"{name}={weight:g}" for name, weight in weights if weight != 1.0]
    return "{" + ", ".join(uneven) + "}" if uneven else "all 1"


def _ours(child: Manifest, owner: Owner) -> bool:
    """Owned by this CacheCluster (by uid): the label alone is no proof, anyone can set it.

    A ConfigMap created by Helm or an app that carries ``cachefleet.io/cluster`` is listed with
    the children, but it is not the operator's to delete.
    """
    references = (child.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid and owner.uid for ref in references)


# -- the change ----------------------------------------------------------------------------


def _start_change(current: RingStatus, planned: RingStatus, observed: Observed) -> WarmUpStatus:
    from cachefleet.ring import movement

    before = ring_names(current)
    after = ring_names(planned)
    moved = movement(current.assignment.to_ring(), planned.assignment.to_ring()).moved_fraction
    stamp = rfc3339(observed.now)
    return WarmUpStatus(
        phase="Provisioning",
        from_shards=len(before),
        to_shards=len(after),
        moved_fraction=round(moved, 6),
        added_shards=[n for n in after if n not in before],
        removed_shards=[n for n in before if n not in after],
        started_at=stamp,
        phase_started_at=stamp,
        from_ring=current,
        to_ring=planned,
    )


def _change_message(warm: WarmUpStatus) -> str:
    what = (
        f"reweighting {warm.to_shards} shards"
        if warm.from_shards == warm.to_shards and not warm.added_shards
        else f"{warm.from_shards} → {warm.to_shards} shards"
    )
    return f"{what}: {warm.moved_fraction * 100:.1f}% of keys move"


def change_id(warm: WarmUpStatus) -> str:
    """Names a capacity change for the sidecars' counters."""
    return ring_change_id(warm.to_ring.version)


def _routing_ring(warm: WarmUpStatus) -> RingStatus:
    return warm.from_ring if warm.phase in ("Provisioning", "Shadowing") else warm.to_ring


def _routing(ring: RingStatus, warm: WarmUpStatus | None) -> tuple[Routing, list[str]]:
    """What the sidecars route by in this phase, and the shards whose children must exist."""
    if warm is None:
        return Routing(ring.assignment, ring.version), ring_names(ring)
    both = sorted({*ring_names(warm.from_ring), *ring_names(warm.to_ring)}, key=shard_number)
    old, new = warm.from_ring, warm.to_ring
    if warm.phase == "Provisioning":
        return Routing(old.assignment, old.version), both
    if warm.phase == "Shadowing":
        section = WarmupConfig(
            phase="shadow",
            shadow_percent=warm.percent,
            next_ring=new.assignment,
            change_id=change_id(warm),
        )
        return Routing(old.assignment, old.version, section), both
    if warm.phase in ("Grace", "Draining"):
        section = WarmupConfig(
            phase="grace" if warm.phase == "Grace" else "drain",
            previous_ring=old.assignment,
            change_id=change_id(warm),
        )
        return Routing(new.assignment, new.version, section), both
    return Routing(new.assignment, new.version), ring_names(new)


def _shards_ready(
    context: RenderContext, shards: list[str], observed: Observed, need_ready: bool
) -> bool:
    for shard in shards:
        live = observed.children.get(("StatefulSet", shard_workload(context.name, shard)))
        if live is None or (need_ready and _ready_replicas(live) < 1):
            return False
    return True


def _ready_replicas(statefulset: Manifest) -> int:
    value = (statefulset.get("status") or {}).get("readyReplicas") or 0
    return int(value)


# -- status --------------------------------------------------------------------------------


def _shard_statuses(
    owner: Owner, shard_set: list[str], routing: Routing | RingStatus, observed: Observed
) -> list[ShardStatus]:
    assignment = routing.assignment if isinstance(routing, RingStatus) else routing.ring
    shares = assignment.to_ring().shares()
    result = []
    for shard in shard_set:
        live = observed.children.get(("StatefulSet", shard_workload(owner.name, shard)))
        replicas = _ready_replicas(live) if live is not None else 0
        result.append(
            ShardStatus(
                name=shard,
                ready=replicas >= 1,
                ready_replicas=replicas,
                share=round(shares.get(shard, 0.0), 6),
            )
        )
    return result


def _ready_condition(
    names: list[str], ready: list[str], live: CacheClusterStatus, observed: Observed
) -> Condition:
    waiting = [n for n in names if n not in ready]
    if not waiting:
        message = f"{len(ready)}/{len(names)} shards ready"
        return condition("Ready", True, "AllShardsReady", message, live.conditions, observed.now)
    shown = ", ".join(waiting[:5]) + (", ..." if len(waiting) > 5 else "")
    message = f"{len(ready)}/{len(names)} shards ready; waiting for {shown}"
    return condition("Ready", False, "ShardsNotReady", message, live.conditions, observed.now)


def _lagging_sidecars(final: str, observed: Observed) -> list[str] | None:
    """Sidecars heard from recently that do not run the config version ``final``; None when
    their reports could not be read."""
    if observed.sidecars is None:
        return None
    return sorted(s for s, version in observed.sidecars.versions.items() if version != final)


def _progressing_condition(
    warm: WarmUpStatus | None,
    pending: str | None,
    ring: RingStatus,
    waiting: list[str],
    lagging: list[str] | None,
    live: CacheClusterStatus,
    observed: Observed,
) -> Condition:
    if warm is None:
        message = f"ring v{ring.version}: {len(ring.assignment.shards)} shards, no change running"
        return condition("Progressing", False, "Stable", message, live.conditions, observed.now)
    change = (
        f"{warm.from_shards} → {warm.to_shards} shards "
        f"({warm.moved_fraction * 100:.1f}% of keys move)"
    )
    detail = {
        "Provisioning": _provisioning_detail(warm, waiting, lagging, observed.leftovers),
        "Shadowing": f"shadowing {warm.percent:g}% of requests to the next ring"
        if warm.percent
        else "writes of moved keys delete them on the next ring; copies begin once every "
        "sidecar does",
        "Grace": f"cut over ({warm.cutover_reason}); the old ring answers misses",
        "Draining": "the new ring alone answers; writes still clean the old owners until every "
        "sidecar has left grace",
        "Finalizing": "the new ring is the only one; removing old shards",
    }[warm.phase]
    message = f"{change}: {detail}"
    if warm.phase in ("Draining", "Finalizing") or (warm.phase == "Shadowing" and not warm.percent):
        config = {"Finalizing": "final", "Draining": "draining"}.get(warm.phase, "shadow")
        if lagging is None:
            message += f"; cannot read yet which config the sidecars run (the {config} one?)"
        elif lagging:
            message += f"; {len(lagging)} sidecars do not run the {config} config yet"
    if pending is not None:
        message += f"; queued: {pending}"
    return condition("Progressing", True, warm.phase, message, live.conditions, observed.now)


def _provisioning_detail(
    warm: WarmUpStatus,
    waiting: list[str],
    lagging: list[str] | None,
    leftovers: LeftoverSweep | None,
) -> str:
    if waiting:
        return f"waiting for new shards {', '.join(waiting)}"
    if warm.sweep_started_at is None:
        who = (
            "to read which config the sidecars run"
            if lagging is None
            else (f"for {len(lagging)} sidecars to run the current config")
        )
        return f"waiting {who} before deleting the keys that shards hold from an earlier ring"
    sweeping = "deleting the keys that shards hold from an earlier ring"
    if leftovers is None:
        return sweeping
    detail = f"{sweeping}: {leftovers.scanned} scanned, {leftovers.deleted} deleted"
    if leftovers.waiting_on:
        detail += f"; cannot scan {leftovers.waiting_on}"
    return detail


def _sweep_blocked_events(
    warm: WarmUpStatus | None, observed: Observed, live: CacheClusterStatus
) -> list[EventSpec]:
    """A Warning when the leftover sweep cannot reach a shard, once per obstacle: the change
    waits for that shard, which someone may need to see outside the status."""
    leftovers = observed.leftovers
    if warm is None or warm.phase != "Provisioning" or leftovers is None:
        return []
    if leftovers.waiting_on is None:
        return []
    before = find(live.conditions, "Progressing")
    if before is not None and f"cannot scan {leftovers.waiting_on}" in before.message:
        return []
    return [
        EventSpec(
            "Warning",
            "LeftoverSweepBlocked",
            f"cannot scan {leftovers.waiting_on}; the change waits for it, as deleting the keys "
            "it holds from an earlier ring must come before the warm-up",
        )
    ]


def _degraded_condition(
    problems: list[str], live: CacheClusterStatus, observed: Observed
) -> Condition:
    if problems:
        message = "; ".join(problems) + "; nothing running was changed"
        return condition("Degraded", True, "InvalidSpec", message, live.conditions, observed.now)
    return condition(
        "Degraded", False, "SpecValid", "the spec is valid", live.conditions, observed.now
    )


def _condition_events(
    problems: list[str], conditions: list[Condition], live: CacheClusterStatus
) -> list[EventSpec]:
    degraded = find(conditions, "Degraded")
    before = find(live.conditions, "Degraded")
    if degraded is None:
        return []
    if degraded.status != "True":
        if before is not None and before.status == "True":
            return [EventSpec("Normal", "SpecValid", "the spec is valid again")]
        return []
    if before is not None and before.status == "True" and before.message == degraded.message:
        return []
    return [EventSpec("Warning", degraded.reason, degraded.message)]


def _nothing_to_run(
    cluster: dict[str, Any],
    owner: Owner,
    live: CacheClusterStatus,
    problems: list[str],
    observed: Observed,
) -> ReconcilePlan:
    """No valid spec has ever been seen (or status is unreadable): report, create nothing."""
    conditions = [
        condition("Ready", False, "NoValidSpec", "nothing runs yet", live.conditions, observed.now),
        condition(
            "Progressing",
            False,
            "NoValidSpec",
            "waiting for a valid spec",
            live.conditions,
            observed.now,
        ),
        _degraded_condition(problems, live, observed),
    ]
    status = live.model_copy(
        update={
            "phase": "Degraded",
            "observed_generation": (cluster.get("metadata") or {}).get("generation"),
            "conditions": conditions,
        }
    )
    return ReconcilePlan(status=status.dump(), events=_condition_events(problems, conditions, live))
