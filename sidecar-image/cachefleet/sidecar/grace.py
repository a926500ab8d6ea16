"""GraceRoute: a moved key in a grace phase, after the cut-over. The new ring answers; its
owner may not have every value yet, so:

- a GET that misses on the new owner is retried on the key's previous owner; on a hit the
  client gets that value and the new owner is filled (DUMP and PTTL on the previous owner, then
  the tombstone-guarded RESTORE of ``warmup.FILL_SCRIPT``, which never overwrites a value
  written meanwhile);
- a write of a moved key first leaves a tombstone on the new owner (so a fill racing it does
  nothing), then goes to the new owner, and deletes the key on the previous owner, so the
  fallback can never bring back a value that was deleted or replaced after the cut-over.

Other reads are answered by the new owner alone.

In the drain phase that follows grace, GETs are answered by the new owner alone too (no
fallback, so nothing is filled from the previous owner) and writes still do all of the above:
a sidecar that has not left grace yet may still read the previous owner, and must find there
no value that a write through this sidecar replaced or deleted.
"""

from __future__ import annotations

import time

from cachefleet.sidecar import resp
from cachefleet.sidecar.commands import Access
from cachefleet.sidecar.pool import ShardPool
from cachefleet.sidecar.route_table import ROUTE_CLASSES, Mode, Outgoing, RouteClass, ShardRoute
from cachefleet.sidecar.shadow import send_fill
from cachefleet.sidecar.slots import PartSlot, Slot
from cachefleet.sidecar.warmup import (
    Discard,
    WarmupRouting,
    clear_on_other_owners,
    delete_request,
    is_null,
    tombstone_request,
    usable,
)


class GraceRoute:
    def __init__(self, warmup: WarmupRouting, active: ShardPool, previous: ShardPool) -> None:
        self.fallback = warmup.mode == Mode.GRACE
        self.name = "grace" if self.fallback else "drain"
        self.warmup = warmup
        self.active = ShardRoute(active)
        self.previous = previous
        self.discard = Discard()

    def for_key(self, key: bytes) -> GraceRoute:
        return self

    def send(self, request: Outgoing) -> None:
        spec = request.spec
        if spec.access == Access.READ:
            if self.fallback and ROUTE_CLASSES[spec] == RouteClass.VALUE_READ:
                GraceRead(self, request).start()
            else:
                self.active.send(request)
            return
        active = self.active.pool.connection(request.protocol, request.client_id)
        for key in request.keys:
            active.send(tombstone_request(key), PartSlot(self.discard))
        self.active.send(request)
        self.warmup.stats.count("grace_delete")
        clear_on_other_owners(self.warmup, request, self.previous, self.active.pool, delete_request)


class GraceRead:
    """A GET of a moved key: the new owner first, the previous owner on a miss."""

    __slots__ = ("dumped", "key", "request", "route", "started")

    retryable = False

    def __init__(self, route: GraceRoute, request: Outgoing) -> None:
        self.route = route
        self.request = request
        self.key = request.keys[0]
        self.dumped: bytes | None = None
        self.started = 0.0

    def start(self) -> None:
        request = self.request
        active = self.route.active.pool
        active.count(request.spec)
        active.connection(request.protocol, request.client_id).send(request.raw, PartSlot(self, 0))

    def part_done(self, slot: Slot, reply: bytes) -> None:
        route, request = self.route, self.request
        stats = route.warmup.stats
        if slot.index == 0:  # the new owner's answer
            previous = route.previous.connection(request.protocol, request.client_id)
            if not is_null(reply) or not route.warmup.healthy(route.previous.name):
                request.slot.fill(reply)
                return
            if not usable(previous):
                stats.dropped += 1
                request.slot.fill(reply)
                return
            self.started = time.monotonic()
            previous.send(request.raw, PartSlot(self, 1))
            previous.send(resp.encode_request([b"DUMP", self.key]), PartSlot(self, 2))
            previous.send(resp.encode_request([b"PTTL", self.key]), PartSlot(self, 3))
        elif slot.index == 1:  # the previous owner's answer is the client's
            request.slot.fill(reply)
            if is_null(reply) or resp.is_error(reply):
                stats.fallback_misses += 1
            else:
                stats.fallback_hits += 1
        elif slot.index == 2:
            self.dumped = reply
        elif send_fill(
            route.warmup,
            route.active.pool,
            request.protocol,
            request.client_id,
            self.key,
            self.dumped,
            reply,
            self.started,
        ):
            stats.fills += 1
