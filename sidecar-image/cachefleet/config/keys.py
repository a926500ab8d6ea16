"""The keys sidecars write on the shards for the operator to read: part of the contract between
the two planes, like the config itself, so both import them from here."""

from __future__ import annotations

# Every key the two planes keep on the shards for themselves starts with this (the heartbeats
# and counters below, the warm-up's tombstones, the gutter's journal); an app's keys must not.
OWN_KEY_PREFIX = "cachefleet:"
OWN_KEY_PREFIX_BYTES = OWN_KEY_PREFIX.encode()


def is_own_key(key: bytes) -> bool:
    """A key under the prefix: the sidecar and the smart client refuse an app's request that
    names one."""
    return key.startswith(OWN_KEY_PREFIX_BYTES)


# A hash of sidecar identity -> "<configVersion> <unix time>", on the shard that owns this key.
HEARTBEAT_KEY = "cachefleet:sidecars"
# How often each sidecar writes its entry there (and once right after it applies a config).
HEARTBEAT_SECONDS = 5.0
# A field of that hash that only the operator writes: "<unix time>" when it found the hash
# without it, that is new or emptied (a restarted or flushed shard). Until the sidecars have had
# time to write their entries again, what the hash holds is no list of the sidecars.
HEARTBEAT_WATCH_FIELD = "operator:watching-since"
# Per capacity change, a hash of the shadowed reads' hits and misses on each warming shard.
WARMUP_STATS_PREFIX = "cachefleet:warmup"


def change_id(ring_version: int | str) -> str:
    """Names a capacity change: the version of the ring it leads to."""
    return f"v{ring_version}"


def warmup_stats_key(change: str) -> str:
    return f"{WARMUP_STATS_PREFIX}:{change}"
