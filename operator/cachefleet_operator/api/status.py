"""The CacheCluster status: what the operator reports and everything it must remember.

The ring assignment and every step of a warm-up live here, so the reconciler is a function of
spec + status + what it observes: an operator restarted at any point carries on exactly where
the last one stopped, and never computes a different ring.
"""

from __future__ import annotations

from typing import Any, Literal

from cachefleet.ring import RingAssignment
from pydantic import Field

from cachefleet_operator.api.base import ApiModel

Phase = Literal[
    "Provisioning", "Shadowing", "Grace", "Draining", "Finalizing", "Stable", "Degraded"
]
WarmUpPhase = Literal["Provisioning", "Shadowing", "Grace", "Draining", "Finalizing"]
CutoverReason = Literal["HitRatioReached", "Timeout", "WarmUpDisabled"]


class RingStatus(ApiModel):
    version: int = Field(ge=1, description="Increases by one with every planned ring.")
    strategy: Literal["planned", "classic"] = Field(description="How this ring was made.")
    tokens_per_shard: int = Field(ge=1, description="Tokens per unit of weight it was made with.")
    assignment: RingAssignment = Field(description="The exact tokens and their owners.")


class ShardStatus(ApiModel):
    name: str = Field(description="The shard's name on the ring (shard-N).")
    ready: bool = Field(description="At least one of its pods is ready.")
    ready_replicas: int = Field(0, description="Ready pods of its StatefulSet.")
    share: float = Field(0.0, description="Fraction of the keyspace it owns on the current ring.")


class WarmUpStatus(ApiModel):
    phase: WarmUpPhase = Field(description="Where the capacity change is.")
    from_shards: int = Field(description="Shard count before the change.")
    to_shards: int = Field(description="Shard count after the change.")
    moved_fraction: float = Field(description="Fraction of keys whose owner changes.")
    added_shards: list[str] = Field(default_factory=list, description="Shards being added.")
    removed_shards: list[str] = Field(default_factory=list, description="Shards being removed.")
    started_at: str = Field(description="When the change was planned (RFC3339).")
    phase_started_at: str = Field(description="When the current phase began (RFC3339).")
    sweep_started_at: str | None = Field(
        None,
        description="When the deletion of keys shards hold from an earlier ring began, every "
        "sidecar running the Provisioning config (RFC3339).",
    )
    sidecar_wait_started_at: str | None = Field(
        None,
        description="When the current step began waiting for every sidecar to run the config "
        "it needs (RFC3339); it waits 120 s at most from then.",
    )
    step: int = Field(0, ge=0, description="Index of the current shadow step.")
    step_started_at: str | None = Field(None, description="When the shadow step began.")
    percent: float = Field(0.0, description="Share of requests shadowed to the next ring (%).")
    cutover_reason: CutoverReason | None = Field(None, description="Why it cut over.")
    cutover_at: str | None = Field(None, description="When it cut over (RFC3339).")
    cutover_hit_ratio: float | None = Field(None, description="Hit ratio seen at cut-over.")
    from_ring: RingStatus = Field(description="The ring before the change.")
    to_ring: RingStatus = Field(description="The ring after the change.")


class Condition(ApiModel):
    type: str = Field(description="Ready, Progressing or Degraded.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word for machines.")
    message: str = Field(description="What happened, for people.")
    last_transition_time: str = Field(description="When status last changed (RFC3339).")


class CacheClusterStatus(ApiModel):
    phase: Phase | None = Field(None, description="Stable, a warm-up phase, or Degraded.")
    observed_generation: int | None = Field(None, description="The spec generation last seen.")
    shards: int | None = Field(None, description="Shards on the ring that routes now.")
    ready_shards: int | None = Field(None, description="Of those, shards with a ready pod.")
    moved_percent: float | None = Field(
        None, description="Percent of keys the last capacity change moved."
    )
    shard_statuses: list[ShardStatus] = Field(
        default_factory=list, description="Readiness and key share per shard."
    )
    ring: RingStatus | None = Field(None, description="The ring the sidecars route by.")
    warm_up: WarmUpStatus | None = Field(None, description="The capacity change in progress.")
    pending_change: str | None = Field(
        None, description="A capacity change queued behind the one in progress."
    )
    applied_spec: dict[str, Any] | None = Field(
        None,
        description="The last valid spec the children were rendered from: an invalid spec "
        "changes nothing that already runs.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, Degraded."
    )
