"""The ring as the operator keeps it: planned once, persisted in status, reused forever.

The status holds the exact token assignment, so a restarted operator reads the ring back instead
of computing it again. A new ring is planned from the persisted one, only when the shard set or
the weights change.
"""

from __future__ import annotations

from collections.abc import Sequence

from cachefleet.ring import Ring, RingAssignment, Shard, classic_ring, plan_change, planned_ring

from cachefleet_operator.api import CacheClusterSpec, RingStatus
from cachefleet_operator.naming import shard_names_for

# During a change the sidecar ConfigMap holds two rings (1 MiB limit) and the status three
# (etcd's 1.5 MiB object limit); a token takes about 6 bytes in the wire form.
MAX_RING_TOKENS = 60_000


class WeightError(ValueError):
    """The spec's shards and weights cannot make a ring the cluster can carry."""


def desired_shards(spec: CacheClusterSpec, current: Sequence[str]) -> list[Shard]:
    """The shards (names and weights) the spec asks for, given the names in use now."""
    names = shard_names_for(current, spec.shards)
    unknown = sorted(set(spec.weights) - set(names))
    if unknown:
        raise WeightError(
            f"spec.weights names {', '.join(unknown)}, but the cluster's shards will be "
            f"{_name_range(names)}"
        )
    shards = [Shard(name, float(spec.weights.get(name, 1.0))) for name in names]
    tokens = round(sum(s.weight for s in shards) * spec.ring.tokens_per_shard)
    if tokens > MAX_RING_TOKENS:
        raise WeightError(
            f"spec: {len(shards)} shards (total weight {sum(s.weight for s in shards):g}) × "
            f"{spec.ring.tokens_per_shard} tokens per shard = {tokens} tokens, more than the "
            f"{MAX_RING_TOKENS} a ring may have to fit its ConfigMap during a change; "
            "lower spec.ring.tokensPerShard or the weights"
        )
    return shards


def same_shards(ring: Ring, shards: Sequence[Shard]) -> bool:
    return tuple((s.name, float(s.weight)) for s in ring.shards) == tuple(
        (s.name, float(s.weight)) for s in shards
    )


def first_ring(spec: CacheClusterSpec, shards: Sequence[Shard]) -> RingStatus:
    tokens = spec.ring.tokens_per_shard
    ring = (
        planned_ring(shards, tokens)
        if spec.ring.strategy == "planned"
        else classic_ring(shards, tokens)
    )
    return ring_status(ring, 1, spec)


def next_ring(spec: CacheClusterSpec, current: RingStatus, shards: Sequence[Shard]) -> RingStatus:
    tokens = spec.ring.tokens_per_shard
    if spec.ring.strategy == "planned":
        ring = plan_change(current.assignment.to_ring(), shards, tokens)
    else:
        ring = classic_ring(shards, tokens)
    return ring_status(ring, current.version + 1, spec)


def ring_status(ring: Ring, version: int, spec: CacheClusterSpec) -> RingStatus:
    return RingStatus(
        version=version,
        strategy=spec.ring.strategy,
        tokens_per_shard=spec.ring.tokens_per_shard,
        assignment=RingAssignment.from_ring(ring),
    )


def ring_names(status: RingStatus) -> list[str]:
    return [s.name for s in status.assignment.shards]


def _name_range(names: Sequence[str]) -> str:
    if len(names) <= 4:
        return ", ".join(names)
    return f"{names[0]}, {names[1]}, ..., {names[-1]} ({len(names)} shards)"
