"""A capacity change in progress, as the sidecar routes it (the config's ``warmup`` section).

In a ``shadow`` phase the active ring answers and the next ring's owners warm up; in a
``grace`` phase the new ring answers and the previous ring's owners are a read fallback; in a
``drain`` phase the new ring alone answers reads while writes still clean the previous owners
(for sidecars still in grace). Only moved keys (a different owner on the two rings) are
concerned; ``WarmupRouting`` tells them apart and hands their requests to ``ShadowRoute`` or
``GraceRoute``, one per (owner, other owner) pair. Which keys are shadowed is chosen by a hash
of the key that is independent of its ring position (``in_shadow``), so the warm set only grows
as the percentage rises.

Nothing here may let a warming or previous owner keep a value older than the active owner's:
writes there are mirrored (an overwrite inside the percentage) or turned into a delete that
leaves a short-lived tombstone, and copies and fills are Lua scripts that do nothing when the
key exists or a tombstone says it was just written (``FILL_SCRIPT``). The sidecar counts what
it measured (``WarmupStats``) and adds it to a hash on each warming shard, where the operator
reads every sidecar's measurement at once (``report``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mmh3

from cachefleet.ring.hashing import hash_tag
from cachefleet.sidecar import resp
from cachefleet.sidecar.commands import Access
from cachefleet.sidecar.pool import BackendConnection, ShardPool
from cachefleet.sidecar.route_table import Mode, Outgoing, Route, RouteClass
from cachefleet.sidecar.slots import PartSlot

SHADOW_SEED = 0x5BD1E995  # the same in _speedups.c
BASIS_POINTS = 10_000
TOMBSTONE_PREFIX = b"cachefleet:tomb:"
TOMBSTONE_MS = 10_000  # longer than any copy or fill may take
COPY_DEADLINE_SECONDS = 2.0  # a copy or fill slower than this is not sent
SHADOW_QUEUE_LIMIT = 10_000  # requests waiting on one warming connection before shadow work drops
STATS_RETENTION_SECONDS = 86_400

# KEYS: key, its tombstone. ARGV: TTL in ms (0: none), DUMP payload.
FILL_SCRIPT = b"""
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('RESTORE', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# KEYS: pairs of key and its tombstone. ARGV: tombstone TTL in ms.
INVALIDATE_SCRIPT = b"""
for i = 1, #KEYS, 2 do
  redis.call('SET', KEYS[i + 1], '1', 'PX', ARGV[1])
  redis.call('DEL', KEYS[i])
end
return 1
"""


def in_shadow(key: bytes, basis_points: int) -> bool:
    """Whether ``key`` is inside the shadow percentage (keys of one hash tag go together)."""
    return mmh3.hash(hash_tag(key), SHADOW_SEED, False) % BASIS_POINTS < basis_points


def tombstone(key: bytes) -> bytes:
    return TOMBSTONE_PREFIX + key


def is_null(reply: bytes) -> bool:
    return reply == b"$-1\r\n" or reply == b"_\r\n"


def fill_request(key: bytes, ttl_ms: int, payload: bytes) -> bytes:
    return resp.encode_request(
        [b"EVAL", FILL_SCRIPT, b"2", key, tombstone(key), str(ttl_ms).encode(), payload]
    )


def invalidate_request(keys: Sequence[bytes]) -> bytes:
    pairs = [part for key in keys for part in (key, tombstone(key))]
    return resp.encode_request(
        [b"EVAL", INVALIDATE_SCRIPT, str(len(pairs)).encode(), *pairs, str(TOMBSTONE_MS).encode()]
    )


def tombstone_request(key: bytes) -> bytes:
    return resp.encode_request([b"SET", tombstone(key), b"1", b"PX", str(TOMBSTONE_MS).encode()])


@dataclass
class WarmupStats:
    """What this sidecar did and measured during the current change (reset by a new one)."""

    change_id: str = ""
    shadowed: dict[str, int] = field(default_factory=dict)  # read, mirror, invalidate
    dropped: int = 0  # shadow work not sent: the warming connection was full or down
    copies: int = 0  # values copied to a warming owner after its miss
    # Per warming shard: reads of moved keys the active owner hit, and whether it hit too.
    hits: dict[str, int] = field(default_factory=dict)
    misses: dict[str, int] = field(default_factory=dict)
    unreported: dict[str, list[int]] = field(default_factory=dict)  # shard -> [hits, misses]
    fallback_hits: int = 0
    fallback_misses: int = 0
    fills: int = 0
    # Keys whose invalidation could not reach their shard, by shard: deleted when it is back.
    lost: dict[str, set[bytes]] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        self.shadowed[kind] = self.shadowed.get(kind, 0) + 1

    def measured(self, shard: str, hit: bool) -> None:
        table = self.hits if hit else self.misses
        table[shard] = table.get(shard, 0) + 1
        pending = self.unreported.setdefault(shard, [0, 0])
        pending[0 if hit else 1] += 1

    def hit_ratio(self) -> float | None:
        hits, misses = sum(self.hits.values()), sum(self.misses.values())
        return hits / (hits + misses) if hits + misses else None


LOST_LIMIT = 100_000  # keys remembered per shard; past it the shard is flushed when it is back


class Discard:
    """Takes the reply to a command whose answer nobody needs; an error on an invalidation
    means its keys may still hold an older value there, which is remembered."""

    __slots__ = ("keys", "lost", "shard")

    retryable = False

    def __init__(
        self, lost: WarmupStats | None = None, shard: str = "", keys: Sequence[bytes] = ()
    ):
        self.lost = lost
        self.shard = shard
        self.keys = keys

    def part_done(self, slot: object, reply: bytes) -> None:
        if self.lost is not None and resp.is_error(reply):
            remember_lost(self.lost, self.shard, self.keys)


def remember_lost(stats: WarmupStats, shard: str, keys: Sequence[bytes]) -> None:
    lost = stats.lost.setdefault(shard, set())
    if len(lost) <= LOST_LIMIT:
        lost.update(keys)


def usable(conn: BackendConnection) -> bool:
    """Whether optional work (a shadow read, a mirror, a copy) may be queued on ``conn``: it is
    up and not backed up, so a slow or dead shard costs the warm-up, never the app."""
    return conn.up and len(conn.waiters) + len(conn.out) < SHADOW_QUEUE_LIMIT


def clear_on_other_owners(
    warmup: WarmupRouting,
    request: Outgoing,
    first: ShardPool,
    home: ShardPool,
    build: Callable[[Sequence[bytes]], bytes],
) -> None:
    """Delete the keys ``request`` writes on their owners on the ring it is not routed by
    (``build`` makes the delete for some keys), so those keep no older value. ``first`` is the
    first key's other owner; the keys of a multi-key write may each have another one, and a key
    whose other owner is ``home`` (where the write goes) has not moved. A delete that cannot be
    sent, or fails, is remembered, and its keys are deleted there before the shard serves
    again."""
    keys = request.keys
    if len(keys) == 1:
        _clear_on(warmup, request, first, keys, build)
        return
    groups: dict[str, tuple[ShardPool, list[bytes]]] = {}
    for key in keys:
        pool = warmup.pools[warmup.other_owner(key)]
        if pool is not home:
            groups.setdefault(pool.name, (pool, []))[1].append(key)
    for pool, group in groups.values():
        _clear_on(warmup, request, pool, group, build)


def _clear_on(
    warmup: WarmupRouting,
    request: Outgoing,
    pool: ShardPool,
    keys: Sequence[bytes],
    build: Callable[[Sequence[bytes]], bytes],
) -> None:
    conn = pool.connection(request.protocol, request.client_id)
    if not warmup.healthy(pool.name) or not conn.up:
        remember_lost(warmup.stats, pool.name, keys)
        return
    conn.send(build(keys), PartSlot(Discard(warmup.stats, pool.name, keys)))


def delete_request(keys: Sequence[bytes]) -> bytes:
    return resp.encode_request([b"DEL", *keys])


class WarmupRouting:
    """The warm-up part of one route table: which keys moved, and their route units."""

    def __init__(
        self,
        mode: Mode,
        other_lookup: Callable[[bytes], int],
        basis_points: int,
        pools: Sequence[ShardPool],
        stats: WarmupStats,
        make_route: Callable[[WarmupRouting, ShardPool, ShardPool], Route],
        healthy: Callable[[str], bool],
    ) -> None:
        self.mode = mode
        self.other_owner = other_lookup
        self.basis_points = basis_points
        self.pools = pools
        self.stats = stats
        self.healthy = healthy
        self._make_route = make_route
        self._routes: dict[tuple[int, int], Route] = {}
        self._diverted: dict[tuple[Route, int, int], Route] = {}

    def stops(self, key: bytes, owner: int, klass: int) -> bool:
        """The warm-up's part of the route decision (``route_decide`` in _speedups.c)."""
        if klass == RouteClass.READ or self.other_owner(key) == owner:
            return False
        if self.mode == Mode.GRACE or klass == RouteClass.WRITE:
            return True
        return self.mode == Mode.SHADOW and in_shadow(key, self.basis_points)

    def route(self, owner: int, other: int) -> Route:
        route = self._routes.get((owner, other))
        if route is None:
            route = self._make_route(self, self.pools[owner], self.pools[other])
            self._routes[(owner, other)] = route
        return route

    def diverted(self, route: Route, owner: int, other: int) -> Route:
        """``route`` (the gutter, or a hold) serves a moved key in place of its ejected or
        re-admitted ``owner``; ``other`` is the key's owner on the other ring. One wrapper per
        (route, owner, other), so a multi-key command's parts still group by destination."""
        wrapper = self._diverted.get((route, owner, other))
        if wrapper is None:
            wrapper = InvalidateOnOtherOwner(route, self, self.pools[owner], self.pools[other])
            self._diverted[(route, owner, other)] = wrapper
        return wrapper


class InvalidateOnOtherOwner:
    """A moved key whose owner is ejected (or held while it is re-admitted): its route unit
    takes the request, and a write also deletes the key, behind a tombstone, on its owner on
    the other ring, as the warm-up's routes delete it there when the owner serves. Ejection is
    decided by each sidecar alone: another sidecar that still sees the owner healthy reads the
    other owner (a shadow copy, a grace fallback), which must not keep the value this write
    replaced."""

    __slots__ = ("inner", "name", "other", "owner", "warmup")

    def __init__(
        self, inner: Route, warmup: WarmupRouting, owner: ShardPool, other: ShardPool
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.warmup = warmup
        self.owner = owner
        self.other = other

    def send(self, request: Outgoing) -> None:
        self.inner.send(request)
        if request.spec.access == Access.READ:
            return
        self.warmup.stats.count("invalidate")
        clear_on_other_owners(self.warmup, request, self.other, self.owner, invalidate_request)
