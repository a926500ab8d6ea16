"""Sidecar config schema, version 1.

The operator renders it into the sidecar's ConfigMap (``sidecar.json``); the sidecar validates it
on start and on every reload. Both sides import this one module, so they cannot disagree.
Compatibility rule: within ``schemaVersion: 1`` fields are only ever added, with defaults.
Field names are camelCase on the wire, like every Kubernetes object next to it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar, Literal, Self

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
        "median p99, and whose last probe took longer than this too, is ejected as slow (a gray "
        "failure)",
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
    ``previousRing`` and the value copied over.
    ``drain``: ``ring`` alone answers; a write of a moved key still deletes it on the owner in
    ``previousRing``, because a sidecar that has not left ``grace`` yet may read it there. The
    operator ends the warm-up once every sidecar reports running this phase (or after a bound),
    so sidecars in grace and sidecars that no longer clean the previous owners do not overlap.
    """

    phase: Literal["shadow", "grace", "drain"]
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
        if self.phase in ("grace", "drain") and self.previous_ring is None:
            raise ValueError(f"warm-up phase {self.phase!r} needs previousRing")
        return self


class HotKeysConfig(_Model):
    """Hot-key detection: a Count-Min sketch over a sliding window, and the top K keys.

    The sketch's shape comes from ``epsilon`` and ``delta``: an estimate exceeds the true count
    by more than epsilon × the requests in the window with probability at most delta, for
    width = ⌈e/ε⌉ and depth = ⌈ln(1/δ)⌉. The defaults keep it under 1 MB. ``sketchWidth`` and
    ``sketchDepth`` pin the shape instead; configs written before epsilon and delta carry them.
    """

    # The window the rate is measured over, in sub-windows that expire one at a time.
    WINDOW_MS: ClassVar[int] = 1000
    SUB_WINDOWS: ClassVar[int] = 4
    MAX_SKETCH_BYTES: ClassVar[int] = 64 * 1024 * 1024

    enabled: bool = False
    # 0.001: a 2719 x 4 sketch, 174 kB with its 4 sub-windows, small enough to stay in the CPU's
    # caches next to everything else the request loop touches (0.0002, 870 kB, cost every
    # request about 0.2 µs more in cache misses); its top 64 is still exact on bench/hotkeys.
    epsilon: float = Field(0.001, gt=0.0, lt=1.0, description="relative error bound ε")
    delta: float = Field(0.02, ge=1e-6, lt=1.0, description="probability δ of exceeding it")
    sketch_width: int | None = Field(None, ge=16, description="pins the width instead of ε")
    sketch_depth: int | None = Field(None, ge=1, le=16, description="pins the depth instead of δ")
    top_k: int = Field(64, ge=1, le=10_000)
    threshold_per_second: int = Field(1000, ge=1, le=1_000_000_000)

    @property
    def width(self) -> int:
        return self.sketch_width or math.ceil(math.e / self.epsilon)

    @property
    def depth(self) -> int:
        return self.sketch_depth or math.ceil(math.log(1.0 / self.delta))

    @property
    def sketch_bytes(self) -> int:
        """Memory of the counters: 32 bits per row, column and sub-window."""
        return 4 * self.width * self.depth * self.SUB_WINDOWS

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.sketch_bytes > self.MAX_SKETCH_BYTES:
            raise ValueError(
                f"hot-key sketch of {self.width} x {self.depth} needs {self.sketch_bytes} bytes, "
                f"more than {self.MAX_SKETCH_BYTES}: raise epsilon or delta"
            )
        return self


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


def split_address(address: str) -> tuple[str, int]:
    """HOST:PORT (``[v6]:PORT`` too) as the host and the port number."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def read_secret(path: str | None) -> str | None:
    """A mounted Secret's value (a file), without the newline an editor may have added."""
    if path is None:
        return None
    return Path(path).read_text().rstrip("\r\n")


def load_config(path: str | Path) -> SidecarConfig:
    """Read and validate a config file; raises ValueError (pydantic's) naming what is wrong."""
    return SidecarConfig.model_validate(json.loads(Path(path).read_text()))
