"""ShadowRoute: a moved key in a shadow phase (mcrouter's WarmUpRoute and ShadowRoute, Envoy's
request mirroring). The active owner answers the client; the warming owner (its owner on the
next ring) gets a copy of the work, which never delays the client's reply:

- a GET inside the shadow percentage is also sent to the warming owner; its reply is not the
  client's but the warm-up's measurement (a hit when it equals the active owner's hit). On a
  miss where the active owner hit, the value is copied: DUMP and PTTL on the active owner, then
  a Lua RESTORE on the warming owner that does nothing if the key exists or was just written
  there (its tombstone), so a copy never overwrites a newer value;
- an overwrite (SET without NX/XX, SETEX, PSETEX, GETSET) inside the percentage is mirrored;
- every other write of a moved key, whatever the percentage (read-modify-writes, deletes,
  expiry changes, overwrites outside the percentage, multi-key writes), deletes the key on the
  warming owner and leaves a tombstone, so the warming owner never keeps a wrong or stale value.

Reads, mirrors and copies are dropped (and counted) when the warming connection is down or
backed up; an invalidation is never dropped: one that cannot be delivered is remembered and its
keys deleted when that shard is re-admitted.
"""

from __future__ import annotations

import time

from cachefleet.sidecar import resp
from cachefleet.sidecar.commands import Access, Kind
from cachefleet.sidecar.pool import ShardPool
from cachefleet.sidecar.route_table import ROUTE_CLASSES, Outgoing, RouteClass, ShardRoute
from cachefleet.sidecar.slots import PartSlot, Slot
from cachefleet.sidecar.warmup import (
    COPY_DEADLINE_SECONDS,
    Discard,
    WarmupRouting,
    clear_on_other_owners,
    fill_request,
    in_shadow,
    invalidate_request,
    is_null,
    usable,
)

# Overwrites that can be mirrored as they are: the result does not depend on the old value.
MIRRORED = frozenset({"set", "setex", "psetex", "getset"})
CONDITIONAL = frozenset({b"nx", b"xx"})


def mirrorable(request: Outgoing) -> bool:
    spec = request.spec
    if spec.name not in MIRRORED or spec.kind != Kind.SINGLE:
        return False
    if spec.name == "set":
        args = resp.split_requests(request.raw)
        return bool(args) and not any(a.lower() in CONDITIONAL for a in args[0][1][3:])
    return True


class ShadowRoute:
    def __init__(self, warmup: WarmupRouting, active: ShardPool, warming: ShardPool) -> None:
        self.name = "shadow"
        self.warmup = warmup
        self.active = ShardRoute(active)
        self.warming = warming
        self.discard = Discard()

    def for_key(self, key: bytes) -> ShadowRoute:
        return self

    def send(self, request: Outgoing) -> None:
        spec = request.spec
        stats = self.warmup.stats
        if spec.access == Access.READ:
            if ROUTE_CLASSES[spec] == RouteClass.VALUE_READ and in_shadow(
                request.keys[0], self.warmup.basis_points
            ):
                ShadowRead(self, request).start()
            else:
                self.active.send(request)
            return
        self.active.send(request)
        warming = self.warming.connection(request.protocol, request.client_id)
        healthy = self.warmup.healthy(self.warming.name)
        inside = all(in_shadow(k, self.warmup.basis_points) for k in request.keys)
        if inside and healthy and usable(warming) and mirrorable(request):
            stats.count("mirror")
            warming.send(request.raw, PartSlot(self.discard))
            return
        stats.count("invalidate")
        clear_on_other_owners(
            self.warmup, request, self.warming, self.active.pool, invalidate_request
        )


class ShadowRead:
    """One shadowed GET: the client's reply comes from the active owner at once; when the
    warming owner's reply is in too, the warm-up counts and, on a miss, copies."""

    __slots__ = ("active_reply", "key", "request", "route", "warming_reply")

    retryable = False

    def __init__(self, route: ShadowRoute, request: Outgoing) -> None:
        self.route = route
        self.request = request
        self.key = request.keys[0]
        self.active_reply: bytes | None = None
        self.warming_reply: bytes | None = None

    def start(self) -> None:
        route, request = self.route, self.request
        stats = route.warmup.stats
        active = route.active.pool
        active.count(request.spec)
        active.connection(request.protocol, request.client_id).send(request.raw, PartSlot(self, 0))
        warming = route.warming.connection(request.protocol, request.client_id)
        if route.warmup.healthy(route.warming.name) and usable(warming):
            stats.count("read")
            warming.send(request.raw, PartSlot(self, 1))
        else:
            stats.dropped += 1
            self.warming_reply = b""  # nothing to compare with

    def part_done(self, slot: Slot, reply: bytes) -> None:
        if slot.index == 0:
            self.active_reply = reply
            self.request.slot.fill(reply)
        else:
            self.warming_reply = reply
        if self.active_reply is not None and self.warming_reply is not None:
            self.settle(self.active_reply, self.warming_reply)

    def settle(self, active: bytes, warming: bytes) -> None:
        if not warming or resp.is_error(active) or resp.is_error(warming) or is_null(active):
            return  # nothing measured: the active owner missed too, or a side failed
        route = self.route
        stats = route.warmup.stats
        shard = route.warming.name
        stats.measured(shard, hit=warming == active)
        if warming == active:
            return
        request = self.request
        warming_conn = route.warming.connection(request.protocol, request.client_id)
        if not is_null(warming):
            # The warming owner holds another value (a write racing this read, or an old
            # copy): delete it; the next read copies the current one.
            warming_conn.send(
                invalidate_request([self.key]), PartSlot(Discard(stats, shard, [self.key]))
            )
            return
        Copy(route, request.protocol, request.client_id, self.key).start()


class Copy:
    """DUMP and PTTL on the active owner, then the tombstone-guarded RESTORE on the warming
    owner (``warmup.FILL_SCRIPT``)."""

    __slots__ = ("client_id", "key", "payload", "protocol", "route", "started", "ttl")

    retryable = False

    def __init__(self, route: ShadowRoute, protocol: int, client_id: int, key: bytes) -> None:
        self.route = route
        self.protocol = protocol
        self.client_id = client_id
        self.key = key
        self.payload: bytes | None = None
        self.ttl: bytes | None = None
        self.started = time.monotonic()

    def start(self) -> None:
        active = self.route.active.pool.connection(self.protocol, self.client_id)
        if not usable(active):
            self.route.warmup.stats.dropped += 1
            return
        active.send(resp.encode_request([b"DUMP", self.key]), PartSlot(self, 0))
        active.send(resp.encode_request([b"PTTL", self.key]), PartSlot(self, 1))

    def part_done(self, slot: Slot, reply: bytes) -> None:
        if slot.index == 0:
            self.payload = reply
            return
        self.ttl = reply
        copied = send_fill(
            self.route.warmup,
            self.route.warming,
            self.protocol,
            self.client_id,
            self.key,
            self.payload,
            reply,
            self.started,
        )
        if copied:
            self.route.warmup.stats.copies += 1


def send_fill(
    warmup: WarmupRouting,
    pool: ShardPool,
    protocol: int,
    client_id: int,
    key: bytes,
    dumped: bytes | None,
    pttl: bytes,
    started: float,
) -> bool:
    """RESTORE what DUMP and PTTL answered on ``pool`` (guarded); False when there was nothing
    to copy or it was dropped. Past the deadline a tombstone may have expired: not sent."""
    if dumped is None or is_null(dumped) or resp.is_error(dumped):
        return False
    if time.monotonic() - started > COPY_DEADLINE_SECONDS:
        warmup.stats.dropped += 1
        return False
    ttl = resp.integer_value(pttl)
    if ttl is None or ttl == -2:
        return False  # expired meanwhile
    payload = resp.bulk_value(dumped)
    conn = pool.connection(protocol, client_id)
    if payload is None or not warmup.healthy(pool.name) or not usable(conn):
        warmup.stats.dropped += 1
        return False
    conn.send(fill_request(key, max(ttl, 0), payload), PartSlot(Discard()))
    return True
