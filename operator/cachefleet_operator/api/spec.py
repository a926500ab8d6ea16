"""The CacheCluster spec: what a user asks for.

Every Field description becomes the CRD's OpenAPI description (``kubectl explain cc.spec``), so
each says what the field does, its default and its unit. Constraints the API server can check
(minimums, enums, patterns) live here too; the rest (weights naming shards that do not exist, a
change during a warm-up) is checked by the reconciler, which reports it in a condition.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema

from cachefleet_operator.api.base import ApiModel

# Redis memory units (redis.conf): 256mb, 2gb, 1048576, 512k ...
REDIS_MEMORY_PATTERN = r"^[0-9]+([kKmMgG][bB]?|[bB])?$"
# Kubernetes resource quantities: 100m, 1, 0.5, 1Gi, 512Mi, 1e3 ...
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+|[munkMGTPE]|[KMGTPE]i)?$"

EvictionPolicy = Literal[
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "noeviction",
]

# A resource quantity as Kubernetes writes it: a string ("500m", "1Gi") or a bare number.
Quantity = Annotated[
    str | int,
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]


class Resources(ApiModel):
    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Resource requests of the container, e.g. {cpu: 100m, memory: 512Mi}. "
        "Requests left out get the operator's defaults (see the parent field).",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        description=(
            "Resource limits of the container. For Redis keep the memory limit about 25% "
            "above maxmemory: Redis needs room for buffers and fragmentation."
        ),
    )


class RedisSpec(ApiModel):
    image: str = Field("redis:7.2", min_length=1, description="Redis image. Default redis:7.2.")
    maxmemory: str = Field(
        "256mb",
        pattern=REDIS_MEMORY_PATTERN,
        description="Redis maxmemory of each shard (redis.conf units: 256mb, 2gb). Default 256mb.",
    )
    eviction_policy: EvictionPolicy = Field(
        "allkeys-lru",
        description="Redis maxmemory-policy: what is evicted when a shard is full. "
        "Default allkeys-lru (it is a cache).",
    )
    resources: Resources = Field(
        default_factory=Resources,
        description="Requests and limits of each Redis container. Default requests: cpu 100m "
        "and memory 125% of maxmemory.",
    )
    extra_config: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Further redis.conf directives, name to value, e.g. {hz: '20', "
            "lazyfree-lazy-eviction: 'yes'}. Directives the operator manages itself "
            "(port, bind, requirepass, masterauth, replicaof, maxmemory, maxmemory-policy, "
            "dir, save, appendonly, include) are refused."
        ),
    )


class PersistenceSpec(ApiModel):
    enabled: bool = Field(
        False,
        description="Keep RDB snapshots on a PersistentVolumeClaim per pod. Default false: "
        "it is a cache, a restarted shard starts empty.",
    )
    size: str = Field(
        "1Gi", pattern=QUANTITY_PATTERN, description="Size of each volume. Default 1Gi."
    )
    storage_class_name: str | None = Field(
        None, description="StorageClass of the volumes; the cluster's default when unset."
    )


class ExistingSecret(ApiModel):
    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field("password", min_length=1, description="Key holding the password.")


class AuthSpec(ApiModel):
    enabled: bool = Field(
        True, description="Require a password on every Redis server. Default true."
    )
    existing_secret: ExistingSecret | None = Field(
        None,
        description="Use this Secret's password (in the CacheCluster's namespace). When unset, "
        "the operator generates one in the Secret <cluster>-auth, key password, and never "
        "changes it.",
    )


class RingSpec(ApiModel):
    strategy: Literal["planned", "classic"] = Field(
        "planned",
        description="How tokens are chosen. planned (default): exact weighted shares, and a "
        "change moves only the keys that must move. classic: ketama-style tokens from the "
        "shards' names, stateless, shares uneven by about 1/sqrt(tokens).",
    )
    tokens_per_shard: int = Field(
        160,
        ge=1,
        le=10_000,
        description="Tokens per unit of weight. Default 160. Used when a ring is planned; "
        "changing it alone does not re-plan the running ring.",
    )


class GutterSpec(ApiModel):
    enabled: bool = Field(
        True,
        description="Run a gutter pool: a few spare Redis servers that briefly take a failed "
        "shard's traffic instead of its ring neighbour. Default true.",
    )
    size: int = Field(1, ge=1, le=64, description="Gutter servers. Default 1.")
    ttl_seconds: int = Field(
        10, ge=1, le=3600, description="TTL the sidecar sets on gutter entries. Default 10."
    )
    maxmemory: str = Field(
        "64mb",
        pattern=REDIS_MEMORY_PATTERN,
        description="Redis maxmemory of each gutter server. Default 64mb.",
    )


class WarmUpSpec(ApiModel):
    enabled: bool = Field(
        True,
        description="Warm the shards that gain keys before a capacity change cuts over. When "
        "false, the operator cuts over as soon as the new shards exist.",
    )
    steps: list[Annotated[float, Field(gt=0, le=100)]] = Field(
        default_factory=lambda: [1.0, 5.0, 25.0, 50.0, 100.0],
        min_length=1,
        max_length=50,
        description="Shadow ramp: the percentages of requests also sent to their owner on the "
        "next ring, one step after another, each held for stepSeconds. Must increase. "
        "Default [1, 5, 25, 50, 100].",
    )
    step_seconds: int = Field(
        60, ge=1, le=86_400, description="How long each ramp step lasts. Default 60."
    )
    ramp_seconds: int | None = Field(
        None,
        ge=1,
        le=604_800,
        description="Total ramp duration instead of stepSeconds: each step then lasts "
        "rampSeconds / len(steps), rounded up to a whole second.",
    )
    cutover_hit_ratio: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="Cut over once the ramp is complete and the warming shards' hit ratio is "
        "at least this. Default 0.9.",
    )
    timeout_seconds: int = Field(
        1800,
        ge=1,
        le=604_800,
        description="Cut over anyway this long after shadowing started (recorded as a timeout "
        "in status and an Event). Default 1800.",
    )
    grace_seconds: int = Field(
        300,
        ge=0,
        le=86_400,
        description="After cut-over, a miss on the new ring is retried on the old owner for "
        "this long; then, once every sidecar has left grace (waited for 120 s at most), the old "
        "ring is dropped, and removed shards are deleted once every sidecar runs the final "
        "config (120 s at most again). Default 300.",
    )
    wait_for_ready_shards: bool = Field(
        True,
        description="Start shadowing only once every new shard has a ready pod. Default true. "
        "Set false where pods cannot run (API-only test clusters).",
    )


class HotKeysSpec(ApiModel):
    enabled: bool = Field(False, description="Detect hot keys in the sidecar. Default false.")
    top_k: int = Field(64, ge=1, le=10_000, description="Hot keys tracked. Default 64.")
    threshold_per_second: int = Field(
        1000, ge=1, description="Requests per second that make a key hot. Default 1000."
    )


class L1Spec(ApiModel):
    enabled: bool = Field(
        False, description="A small in-process cache in the sidecar for hot keys. Default false."
    )
    max_entries: int = Field(10_000, ge=1, description="Entries kept. Default 10000.")
    ttl_ms: int = Field(1000, ge=1, description="How long an entry is served. Default 1000.")


class HealthSpec(ApiModel):
    check_interval_ms: int = Field(
        1000,
        ge=50,
        le=60_000,
        description="How often each sidecar probes each shard (PING on a connection of its "
        "own). Default 1000.",
    )
    eject_after_failures: int = Field(
        3,
        ge=1,
        le=100,
        description="Failed or timed-out probes in a row that eject a shard (its keys then go to "
        "the gutter). A refused or reset connection, or a request unanswered after "
        "requestTimeoutMs, ejects at once. Default 3.",
    )
    slow_threshold_ms: int = Field(
        250,
        ge=1,
        le=600_000,
        description="A shard whose recent p99 round trip is above this and at least 4 times the "
        "other shards' median p99, and whose last health probe also took longer than this, is "
        "ejected as slow (a gray failure). Default 250.",
    )
    max_ejection_percent: int = Field(
        50,
        ge=0,
        le=100,
        description="At most this share of the shards is ejected at once (at least one when "
        "above 0; 0 never ejects); beyond it a failing shard stays in the ring and its requests "
        "fail fast. Default 50.",
    )


class SidecarSpec(ApiModel):
    image: str = Field(
        "cachefleet/sidecar:0.1.0",
        min_length=1,
        description="Sidecar image injected into application pods.",
    )
    port: int = Field(
        6379, ge=1, le=65_535, description="Port the sidecar serves Redis on (127.0.0.1)."
    )
    admin_port: int = Field(
        9121, ge=1, le=65_535, description="Port of metrics, /healthz and /readyz."
    )
    pool_size: int = Field(
        1, ge=1, le=64, description="Pipelined connections per shard per sidecar. Default 1."
    )
    connect_timeout_ms: int = Field(
        1000, ge=1, le=60_000, description="Timeout connecting to a shard. Default 1000."
    )
    request_timeout_ms: int = Field(
        1000, ge=1, le=600_000, description="Timeout of one request to a shard. Default 1000."
    )
    health: HealthSpec = Field(
        default_factory=HealthSpec,
        description="How each sidecar checks the shards and when it ejects one.",
    )
    hot_keys: HotKeysSpec = Field(default_factory=HotKeysSpec, description="Hot-key detection.")
    l1: L1Spec = Field(default_factory=L1Spec, description="In-process L1 cache.")
    resources: Resources = Field(
        default_factory=Resources,
        description="Requests and limits of the injected sidecar container. Default requests: "
        "cpu 50m, memory 64Mi.",
    )


class Toleration(ApiModel):
    key: str | None = Field(None, description="Taint key; empty with Exists matches all.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal.")
    value: str | None = Field(None, description="Taint value, with Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate; empty tolerates all."
    )
    toleration_seconds: int | None = Field(None, description="With NoExecute: how long.")


class PodDisruptionBudgetSpec(ApiModel):
    enabled: bool = Field(
        True, description="Create PodDisruptionBudgets for the shards and the gutter."
    )
    max_unavailable: int = Field(
        1,
        ge=1,
        description="Shard pods a voluntary disruption (a node drain) may take at once. Default 1.",
    )


class SchedulingSpec(ApiModel):
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels Redis pods must have."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations of Redis pods."
    )
    spread_across_nodes: bool = Field(
        True, description="Spread shard pods across nodes (topology spread). Default true."
    )
    spread_across_zones: bool = Field(
        True, description="Spread shard pods across zones (topology spread). Default true."
    )
    when_unsatisfiable: Literal["ScheduleAnyway", "DoNotSchedule"] = Field(
        "ScheduleAnyway",
        description="What the scheduler does when spreading is impossible. Default "
        "ScheduleAnyway (a cache would rather run unevenly than not at all).",
    )
    priority_class_name: str | None = Field(None, description="PriorityClass of Redis pods.")
    pod_disruption_budget: PodDisruptionBudgetSpec = Field(
        default_factory=PodDisruptionBudgetSpec, description="Disruption budgets."
    )


class CacheClusterSpec(ApiModel):
    shards: int = Field(
        ge=1,
        le=1000,
        description="Number of Redis shards (also `kubectl scale cc/NAME --replicas=N`). "
        "Shards are named shard-0, shard-1, ...; scaling up adds the lowest free numbers, "
        "scaling down removes the highest.",
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="Relative weight by shard name for mixed sizes, e.g. {shard-3: 2}: that "
        "shard owns twice the keys of a weight-1 shard. Unlisted shards weigh 1.",
    )
    replicas_per_shard: int = Field(
        0,
        ge=0,
        le=5,
        description="Redis replicas following each shard's primary. Default 0 (a cache "
        "refills from the database).",
    )
    redis: RedisSpec = Field(default_factory=RedisSpec, description="The Redis servers.")
    persistence: PersistenceSpec = Field(
        default_factory=PersistenceSpec, description="Snapshots on volumes. Off by default."
    )
    auth: AuthSpec = Field(default_factory=AuthSpec, description="The shards' password.")
    ring: RingSpec = Field(default_factory=RingSpec, description="The consistent-hash ring.")
    gutter: GutterSpec = Field(default_factory=GutterSpec, description="The gutter pool.")
    warm_up: WarmUpSpec = Field(
        default_factory=WarmUpSpec, description="How a capacity change is warmed up."
    )
    sidecar: SidecarSpec = Field(
        default_factory=SidecarSpec, description="The sidecar's settings (its ConfigMap)."
    )
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec, description="Where Redis pods run."
    )
