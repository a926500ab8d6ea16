"""Sidecar config schema, version 1.

The operator renders it into the sidecar's ConfigMap (``sidecar.json``); the sidecar validates it
on start and on every reload. Both sides import this one module, so they cannot disagree.
Compatibility rule: within ``schemaVersion: 1`` fields are only ever added, with defaults.
Field names are camelCase on the wire, like every Kubernetes object next to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from cachefleet.ring.assignment import RingAssignment

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


def _check_host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return value


class ShardEndpoint(_Model):
    """A Redis server the sidecar talks to, by the name the ring uses for it."""

    name: str = Field(min_length=1, max_length=253)
    address: str = Field(description="HOST:PORT, usually the shard's stable DNS name")

    @model_validator(mode="after")
    def _address(self) -> Self:
        _check_host_port(self.address)
        return self


class PoolConfig(_Model):
    connections_per_shard: int = Field(1, ge=1, le=64)
    connect_timeout_ms: int = Field(1000, ge=1, le=60_000)
    request_timeout_ms: int = Field(1000, ge=1, le=600_000)


class AuthConfig(_Model):
    shard_password_file: str | None = Field(
        None, description="file holding the password the sidecar sends to shards (AUTH)"
    )
    shard_username: str | None = None
    client_password_file: str | None = Field(
        None, description="if set, clients must AUTH with this password"
    )


class LimitsConfig(_Model):
    max_request_bytes: int = Field(
        512 * 1024 * 1024, ge=1024, description="like proto-max-bulk-len"
    )
    max_clients: int = Field(10_000, ge=1)


class GutterConfig(_Model):
    """Facebook's gutter pool: a few spare servers that take a failed shard's traffic briefly."""

    enabled: bool = False
    shards: list[ShardEndpoint] = Field(default_factory=list)
    ttl_seconds: int = Field(10, ge=1, le=3600)


class HealthConfig(_Model):
    """When the sidecar ejects a shard (its keys then go to the gutter) and re-admits it."""

    check_interval_ms: int = Field(
        1000, ge=50, description="how often each shard is probed with PING on its own connection"
    )
    eject_after_failures: int = Field(
        3, ge=1, description="failed or timed-out probes in a row that eject a shard"
    )
    slow_threshold_ms: int = Field(
        250,
        ge=1,
        description="a shard whose recent p99 is above this and far above the other shards' "
        "median p99 is ejected as slow (a gray failure)",
    )
    max_ejection_percent: int = Field(
        50,
        ge=0,
        le=100,
        description="at most this share of the ring's shards is ejected at once (at least one "
        "when above 0; 0 never ejects); beyond it a failing shard stays in the ring",
    )


class WarmupConfig(_Model):
    """A ring change in progress, driven by the operator.

    ``shadow``: ``ring`` still routes; ``shadowPercent`` of requests are also sent to their
    owner on ``nextRing`` so its new shards fill before they serve.
    ``grace``: ``ring`` is already the new ring; a miss on it is retried on the owner in
    ``previousRing`` and the value copied over, until the operator ends the warm-up.
    """

    phase: Literal["shadow", "grace"]
    shadow_percent: float = Field(0.0, ge=0.0, le=100.0)
    next_ring: RingAssignment | None = None
    previous_ring: RingAssignment | None = None
    change_id: str = Field(
        "0",
        min_length=1,
        max_length=64,
        description="names this capacity change: the sidecars add what they measure to the hash "
        "cachefleet:warmup:<changeId> on each warming shard, where the operator reads it",
    )

    @model_validator(mode="after")
    def _rings_for_phase(self) -> Self:
        if self.phase == "shadow" and self.next_ring is None:
            raise ValueError("warm-up phase 'shadow' needs nextRing")
        if self.phase == "grace" and self.previous_ring is None:
            raise ValueError("warm-up phase 'grace' needs previousRing")
        return self


class HotKeysConfig(_Model):
    enabled: bool = False
    sketch_width: int = Field(2048, ge=16)
    sketch_depth: int = Field(4, ge=1, le=16)
    top_k: int = Field(32, ge=1)
    threshold_per_second: int = Field(1000, ge=1)


class L1Config(_Model):
    enabled: bool = False
    max_entries: int = Field(10_000, ge=1)
    ttl_ms: int = Field(1000, ge=1)


class SidecarConfig(_Model):
    schema_version: Literal[1] = 1
    config_version: str = Field(
        "0", description="opaque revision set by the operator; reported in metrics"
    )
    listen: str = "127.0.0.1:6379"
    admin_listen: str = "127.0.0.1:9121"
    shards: list[ShardEndpoint] = Field(min_length=1)
    ring: RingAssignment
    pool: PoolConfig = PoolConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    gutter: GutterConfig = GutterConfig()
    health: HealthConfig = HealthConfig()
    warmup: WarmupConfig | None = None
    hot_keys: HotKeysConfig = HotKeysConfig()
    l1: L1Config = L1Config()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_host_port(self.listen)
        _check_host_port(self.admin_listen)
        names = [s.name for s in self.shards]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate shard names: {', '.join(duplicates)}")
        rings = [("ring", self.ring)]
        if self.warmup is not None:
            rings += [("warmup.nextRing", self.warmup.next_ring)] if self.warmup.next_ring else []
            rings += (
                [("warmup.previousRing", self.warmup.previous_ring)]
                if self.warmup.previous_ring
                else []
            )
        known = set(names)
        for label, ring in rings:
            missing = sorted({s.name for s in ring.shards} - known)
            if missing:
                raise ValueError(f"{label} names shards with no address: {', '.join(missing)}")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


def load_config(path: str | Path) -> SidecarConfig:
    """Read and validate a config file; raises ValueError (pydantic's) naming what is wrong."""
    return SidecarConfig.model_validate(json.loads(Path(path).read_text()))
