"""L1: the values of hot keys in the sidecar's own memory, kept fresh by the shards themselves.

A GET of a hot key (``hotkeys``) is answered from here when its value is present and younger than
``l1.ttlMs``; the C loop does that without leaving the fast path (``_speedups.l1_serve``), the
Python loop through ``L1Route``. A miss is fetched (``L1Fill``) on the shard's *tracking
connection*: a RESP3 connection with ``CLIENT TRACKING ON``, so the shard remembers that this
sidecar read the key and pushes an invalidation (a RESP3 ``>`` frame) the moment anyone, through
any sidecar or straight to the shard, changes it, and when it expires or is evicted. A write of
a hot key through this sidecar drops the entry at once.

Rules that keep it from ever serving a stale value:

- a value fetched before an invalidation and arriving after it is never cached: every fill
  carries a token, and an invalidation of the key cancels the fill in flight;
- if a tracking connection breaks, every entry of its shard is dropped and L1 stays off for that
  shard (``usable``) until the connection and its tracking are back;
- only bulk-string replies are cached: the same bytes in RESP2 and RESP3, so every client gets
  exactly what the shard would send it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import hiredis

from cachefleet.config import L1Config
from cachefleet.sidecar import resp
from cachefleet.sidecar.pool import CLOSED, DOWN, BackendConnection, ShardPool
from cachefleet.sidecar.route_table import Outgoing, ShardRoute
from cachefleet.sidecar.slots import PartSlot, Slot

RESP2_NULL = b"$-1\r\n"
RESP3_NULL = b"_\r\n"


@dataclass
class L1Stats:
    hits: int = 0  # answered here by the Python paths (the C loop counts its own)
    misses: int = 0
    fills: int = 0  # values stored
    fills_declined: int = 0  # invalidated while in flight, or not a string
    evictions: int = 0  # dropped to make room
    invalidations: dict[str, int] = field(default_factory=dict)  # by source: push, write, ...
    flushes: int = 0  # a shard's entries dropped at once (its tracking link broke)

    def invalidated(self, source: str, count: int = 1) -> None:
        self.invalidations[source] = self.invalidations.get(source, 0) + count


class L1Cache:
    def __init__(self, config: L1Config, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.max_entries = config.max_entries
        self.ttl_ns = config.ttl_ms * 1_000_000
        self.clock = clock
        # key -> (reply, expires at (monotonic ns), owner): the C loop reads this dict directly.
        self.entries: dict[bytes, tuple[bytes, int, int]] = {}
        self.pending: dict[bytes, object] = {}  # key -> the token of its fill in flight
        self.stats = L1Stats()

    def get(self, key: bytes) -> bytes | None:
        entry = self.entries.get(key)
        if entry is None or self.clock() >= entry[1]:
            return None
        return entry[0]

    def begin_fill(self, key: bytes) -> object:
        token = object()
        self.pending[key] = token
        return token

    def finish_fill(self, key: bytes, token: object, reply: bytes, owner: int) -> bool:
        """Store a fetched value unless it was invalidated meanwhile; whether it was stored."""
        if self.pending.get(key) is not token:
            self.stats.fills_declined += 1
            return False
        del self.pending[key]
        if reply[:1] != b"$" or reply == RESP2_NULL:
            self.stats.fills_declined += 1
            return False
        entries = self.entries
        if key not in entries and len(entries) >= self.max_entries:
            del entries[next(iter(entries))]  # the oldest: hot sets are small, ages similar
            self.stats.evictions += 1
        entries.pop(key, None)
        entries[key] = (reply, self.clock() + self.ttl_ns, owner)
        self.stats.fills += 1
        return True

    def invalidate(self, keys: Sequence[bytes], source: str) -> None:
        dropped = 0
        for key in keys:
            self.pending.pop(key, None)
            if self.entries.pop(key, None) is not None:
                dropped += 1
        if dropped:
            self.stats.invalidated(source, dropped)

    def flush_owner(self, owner: int) -> None:
        """Everything of one shard (its tracking link broke): entries and fills in flight."""
        for key in [k for k, entry in self.entries.items() if entry[2] == owner]:
            del self.entries[key]
        self.pending.clear()  # which shard a pending fill is for is not kept: cancel them all
        self.stats.flushes += 1

    def flush(self) -> None:
        self.entries.clear()
        self.pending.clear()
        self.stats.flushes += 1

    def keep_only(self, hot: frozenset[bytes]) -> None:
        """Drop the entries of keys that are not hot any more."""
        for key in [k for k in self.entries if k not in hot]:
            del self.entries[key]
            self.stats.invalidated("cooled")


def invalidated_keys(push: bytes) -> list[bytes] | None:
    """The keys of an ``invalidate`` push frame; None for every key (a flush), [] for a push
    that is not an invalidation."""
    reader = hiredis.Reader()
    reader.feed(push)
    frame = reader.gets()
    if not isinstance(frame, list) or len(frame) != 2 or frame[0] != b"invalidate":
        return []
    keys = frame[1]
    if keys is None:
        return None
    return [bytes(k) for k in keys] if isinstance(keys, list) else []


class TrackingLink:
    """The tracking connection to one shard: fills go out on it, invalidations come back."""

    def __init__(
        self, conn: BackendConnection, owner: int, l1: L1Cache, changed: Callable[[], None]
    ):
        self.conn = conn
        self.owner = owner
        self.l1 = l1
        self.changed = changed
        self.up = False
        conn.on_push = self.pushed
        conn.on_ready = self.ready

    def pushed(self, frame: bytes) -> None:
        keys = invalidated_keys(frame)
        if keys is None:
            self.l1.flush_owner(self.owner)
        elif keys:
            self.l1.invalidate(keys, "push")

    def ready(self) -> None:
        if not self.up:
            self.up = True
            self.changed()

    def failed(self) -> None:
        """Its shard's entries cannot be trusted any more: drop them, serve none until back."""
        self.l1.flush_owner(self.owner)
        if self.up:
            self.up = False
            self.changed()

    @property
    def usable(self) -> bool:
        return self.up and self.conn.state not in (DOWN, CLOSED)

    def close(self) -> None:
        self.l1.flush_owner(self.owner)
        self.up = False
        self.conn.close()

    # -- FailureHandler: what the tracking connection tells when it fails ----------------

    def connection_failed(self, pool_name: str, reason: str) -> None:
        self.failed()

    def retry_elsewhere(self, raw: bytes, args: list[bytes], slot: Slot, protocol: int) -> bool:
        """A fill in flight when the link broke is sent on the shard's ordinary connection:
        its client gets the value, nothing is cached."""
        fill = slot.parent
        if isinstance(fill, L1Fill):
            fill.route.shard.send(fill.request)
            return True
        return False


class L1Route:
    """The route unit of a hot key: GETs from L1 (or filled through the tracking link), writes
    drop the entry at once and go to the shard."""

    def __init__(self, pool: ShardPool, link: TrackingLink) -> None:
        self.name = "l1"
        self.shard = ShardRoute(pool)
        self.link = link
        self.l1 = link.l1

    def for_key(self, key: bytes) -> L1Route:
        return self

    def send(self, request: Outgoing) -> None:
        spec = request.spec
        l1 = self.l1
        if spec.name == "get" and len(request.keys) == 1:
            key = request.keys[0]
            cached = l1.get(key)
            if cached is not None:
                l1.stats.hits += 1
                request.slot.fill(cached)
                return
            l1.stats.misses += 1
            if self.link.usable:
                L1Fill(self, request).start()
                return
        elif spec.name == "mget":
            # An MGET's part for this shard: the keys in L1 answered here, only the others
            # asked of the shard (keys of one shard can be hot and cold at once).
            values = [l1.get(key) for key in request.keys]
            missing = [
                key for key, value in zip(request.keys, values, strict=True) if value is None
            ]
            l1.stats.hits += len(values) - len(missing)
            l1.stats.misses += len(missing)
            if not missing:
                request.slot.fill(resp.array(values))  # type: ignore[arg-type]
                return
            if len(missing) < len(values):
                L1MgetRest(self.shard, request, values, missing).start()
                return
        elif spec.writes:
            l1.invalidate(request.keys, "write")
        self.shard.send(request)


class L1MgetRest:
    """The part of an MGET that L1 could not answer, fetched from the shard and merged back in
    the keys' order."""

    __slots__ = ("missing", "request", "shard", "slot", "values")

    retryable = True  # a read for the client: on a failed connection it may go to the gutter

    def __init__(
        self,
        shard: ShardRoute,
        request: Outgoing,
        values: list[bytes | None],
        missing: list[bytes],
    ) -> None:
        self.shard = shard
        self.request = request
        self.slot = request.slot  # the client's, as the retry looks it up
        self.values = values
        self.missing = missing

    def start(self) -> None:
        request = self.request
        rest = Outgoing(
            request.spec,
            self.missing,
            resp.encode_request([b"MGET", *self.missing]),
            PartSlot(self),
            request.protocol,
            request.client_id,
        )
        self.shard.send(rest)

    def part_done(self, slot: Slot, reply: bytes) -> None:
        fetched = resp.array_elements(reply)
        if fetched is None or len(fetched) != len(self.missing):
            self.request.slot.fill(reply)  # an error: the client gets the shard's own
            return
        answers = iter(fetched)
        merged = [value if value is not None else next(answers) for value in self.values]
        self.request.slot.fill(resp.array(merged))


class L1Fill:
    """A GET of a hot key fetched on the tracking connection; its value is cached unless the
    key was invalidated while it was in flight."""

    __slots__ = ("key", "request", "route", "token")

    retryable = False

    def __init__(self, route: L1Route, request: Outgoing) -> None:
        self.route = route
        self.request = request
        self.key = request.keys[0]
        self.token = route.l1.begin_fill(self.key)

    def start(self) -> None:
        self.route.link.conn.send(resp.encode_request([b"GET", self.key]), PartSlot(self))

    def part_done(self, slot: Slot, reply: bytes) -> None:
        route = self.route
        if not resp.is_error(reply):
            route.l1.finish_fill(self.key, self.token, reply, route.link.owner)
        if reply == RESP3_NULL and self.request.protocol == 2:
            reply = RESP2_NULL  # the tracking connection speaks RESP3; this client RESP2
        self.request.slot.fill(reply)
