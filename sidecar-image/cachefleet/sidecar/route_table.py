"""The route table: one routing snapshot, compiled so that each request is decided once.

A config apply, an ejection or a re-admission builds a new table and swaps it in; requests
already queued keep the connections they were given. The decision for a key is its owner on the
ring, then ``stops[owner]``: 0 queues it on the fast path to the owner's connection, anything
else (a ``Reason``) hands that one request to a route unit instead, and the next request of the
same buffer is back on the fast path. During a capacity change (``warmup``) a key whose owner
differs on the other ring also stops, by its command's class: writes always, GETs in a shadow
phase when the key is inside the shadow percentage, GETs in a grace phase (never in a drain
phase: the new owner alone answers them). The C loop
(``_speedups.route_requests``) takes the same decision from ``native``; the Python loop in
``server`` takes it here (``decide``). Everything that is not a plain single-key command
(multi-key commands, a route unit's request, a retry) asks ``destination(key)``, which names
the ``Route`` that sends it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

import mmh3

from cachefleet.sidecar import resp
from cachefleet.sidecar.commands import COMMANDS, Access, CommandSpec, Kind
from cachefleet.sidecar.resp import Bytes
from cachefleet.sidecar.slots import Slot
from cachefleet.sidecar.speedups import make_route_table

if TYPE_CHECKING:
    from cachefleet.sidecar._speedups import Ring as NativeRing
    from cachefleet.sidecar._speedups import RouteTable as NativeRouteTable
    from cachefleet.sidecar.pool import ShardPool


class Reason(IntEnum):
    """Why a request leaves the fast path (0: it does not). The same numbers in _speedups.c."""

    FAST = 0
    GUTTER = 1  # the owner is ejected: the gutter pool serves its keys
    HOLD = 2  # the owner is being re-admitted: its requests wait for the clean-up
    SHADOW = 3  # a moved key in a shadow phase: the warming owner gets a copy of the work
    GRACE = 4  # a moved key in a grace phase: a miss is retried on the previous owner
    L1 = 5  # a hot key: GETs from L1, writes drop its entry


class Mode(IntEnum):
    """The warm-up phase the table routes in (``WarmupConfig.phase``)."""

    NONE = 0
    SHADOW = 1
    GRACE = 2
    DRAIN = 3  # after grace: only writes of moved keys stop (they still clean the old owner)


class RouteClass(IntEnum):
    """What a warm-up does with a fast command's request for a moved key."""

    READ = 0  # a read it leaves alone: the active owner answers
    VALUE_READ = 1  # GET: shadowed (measured, copied) or retried on the previous owner
    WRITE = 2  # changes the key: the other owner must never keep an older value


def route_class(spec: CommandSpec) -> RouteClass:
    if spec.access == Access.READ:
        return RouteClass.VALUE_READ if spec.name == "get" else RouteClass.READ
    return RouteClass.WRITE


ROUTE_CLASSES: dict[CommandSpec, int] = {spec: route_class(spec) for spec in COMMANDS.values()}
# The commands the fast paths queue themselves: one key, right after the command name.
FAST_COMMANDS: dict[bytes, tuple[CommandSpec, int, int]] = {
    name: (spec, spec.arity, route_class(spec))
    for name, spec in COMMANDS.items()
    if spec.kind is Kind.SINGLE and spec.key_index == 1
}


class HotKeyCounter(Protocol):
    """Hot-key detection as the route table uses it (``hotkeys.HotKeys`` or its C twin)."""

    def observe(self, key: bytes, key_hash: int, /) -> bool: ...

    def hot_keys(self) -> frozenset[bytes]: ...


def whole_key_hash(key: bytes) -> int:
    """The hash hot-key detection counts a key by (the ring hashes only its hash tag)."""
    return mmh3.hash(key, 0, False)


class Warmup(Protocol):
    """A capacity change as the route table sees it (``warmup.WarmupRouting``)."""

    mode: Mode
    basis_points: int  # of 10000: the shadow percentage

    def other_owner(self, key: bytes) -> int: ...

    def stops(self, key: bytes, owner: int, klass: int) -> bool: ...

    def route(self, owner: int, other: int) -> Route: ...

    def diverted(self, route: Route, owner: int, other: int) -> Route: ...


@dataclass(slots=True)
class Outgoing:
    """One request on its way to a route: what it is, its bytes, and where its reply goes."""

    spec: CommandSpec
    keys: Sequence[bytes]
    raw: Bytes
    slot: Slot
    protocol: int  # the client's: the reply must be in it
    client_id: int  # picks the client's connection of a pool, so its requests keep their order


class Route(Protocol):
    """Where a request goes: a shard's connections, or a route unit (mcrouter style)."""

    name: str

    def send(self, request: Outgoing) -> None: ...


class OwnerRoute(Route, Protocol):
    """What the table holds per owner; the gutter picks its member by key."""

    def for_key(self, key: bytes) -> Route: ...


class ShardRoute:
    """The owner's own connections: the route of every request when nothing is wrong."""

    __slots__ = ("name", "pool")

    def __init__(self, pool: ShardPool) -> None:
        self.pool = pool
        self.name = pool.name

    def for_key(self, key: bytes) -> Route:
        return self

    def send(self, request: Outgoing) -> None:
        pool = self.pool
        pool.count(request.spec)
        pool.connection(request.protocol, request.client_id).send(request.raw, request.slot)


class ErrorRoute:
    """Answers at once with one error (an ejected shard with nowhere else to go)."""

    __slots__ = ("count", "name", "reply")

    def __init__(self, name: str, message: str, count: Callable[[str], None]) -> None:
        self.name = name
        self.reply = resp.error(message)
        self.count = count

    def for_key(self, key: bytes) -> Route:
        return self

    def send(self, request: Outgoing) -> None:
        self.count(self.name)
        request.slot.fill(self.reply)


@dataclass(frozen=True, eq=False)
class RouteTable:
    version: str
    lookup: Callable[[bytes], int]
    pools: tuple[ShardPool, ...]  # by pool index: the active ring's shards first, as owners
    stops: bytes  # by owner: a Reason, 0 for the fast path
    routes: tuple[OwnerRoute, ...]  # by owner: ShardRoute, or the route unit of its reason
    native: NativeRouteTable | None = None  # the same table for the C loop
    warmup: Warmup | None = None  # a capacity change in progress
    tracker: HotKeyCounter | None = None  # counts every request's key
    l1_routes: tuple[Route | None, ...] = ()  # by owner: its L1Route while its L1 is usable

    @property
    def plain(self) -> bool:
        """Nothing leaves the fast path."""
        return not any(self.stops) and self.warmup is None and self.tracker is None

    def hot_stop(self, key: bytes, owner: int, klass: int) -> bool:
        """Counts ``key`` (every request's key is counted) and says whether L1 takes the
        request: a GET or a write of a hot key whose shard's L1 is usable. The same steps as
        route_requests in C; only called when there is a tracker."""
        assert self.tracker is not None
        hot = self.tracker.observe(key, whole_key_hash(key))
        return (
            hot
            and klass != RouteClass.READ
            and owner < len(self.l1_routes)
            and self.l1_routes[owner] is not None
        )

    def decide(self, key: bytes, klass: int = RouteClass.VALUE_READ) -> tuple[int, int]:
        """(owner, reason): the decision the fast paths take (the Python loop inlines it)."""
        owner = self.lookup(key)
        stop = self.stops[owner]
        if stop:
            return owner, stop
        warmup = self.warmup
        if warmup is not None and warmup.stops(key, owner, klass):
            return owner, Reason.SHADOW if warmup.mode == Mode.SHADOW else Reason.GRACE
        return owner, Reason.FAST

    def destination(self, key: bytes) -> Route:
        owner = self.lookup(key)
        warmup = self.warmup
        if self.stops[owner]:
            route = self.routes[owner].for_key(key)
            if warmup is not None:
                other = warmup.other_owner(key)
                if other != owner:
                    return warmup.diverted(route, owner, other)
            return route
        if warmup is not None:
            other = warmup.other_owner(key)
            if other != owner:
                return warmup.route(owner, other)
        if self.l1_routes and self.tracker is not None:
            l1_route = self.l1_routes[owner]
            if l1_route is not None and key in self.tracker.hot_keys():
                return l1_route
        return self.routes[owner]


def build_route_table(
    version: str,
    lookup: Callable[[bytes], int],
    native_ring: NativeRing | None,
    pools: Sequence[ShardPool],
    diverted: Mapping[int, tuple[Reason, OwnerRoute]],
    warmup: Warmup | None = None,
    native_other: NativeRing | None = None,
    tracker: HotKeyCounter | None = None,
    l1: dict[bytes, tuple[bytes, int, int]] | None = None,
    l1_routes: Sequence[Route | None] = (),
) -> RouteTable:
    """A table over ``pools`` where the owners in ``diverted`` go to a route unit, the moved
    keys of a capacity change (``warmup``, with the other ring as ``native_other`` for the C
    loop) to its route units, and hot keys (``tracker``) to L1 (``l1``, its entries, and
    ``l1_routes``, by owner: None where that shard's L1 is not usable)."""
    routes: list[OwnerRoute] = [ShardRoute(pool) for pool in pools]
    stops = bytearray(len(pools))
    for owner, (reason, route) in diverted.items():
        stops[owner] = reason
        routes[owner] = route
    l1_ok = bytes(
        1 if i < len(l1_routes) and l1_routes[i] is not None else 0 for i in range(len(pools))
    )
    native = None
    if make_route_table is not None and native_ring is not None:
        warming = warmup is not None and native_other is not None
        native = make_route_table(
            native_ring,
            FAST_COMMANDS,
            bytes(stops),
            native_other if warming else None,
            int(warmup.mode) if warmup is not None and warming else 0,
            warmup.basis_points if warmup is not None and warming else 0,
            tracker,
            l1 if l1 is not None and l1_routes else None,
            l1_ok,
        )
    return RouteTable(
        version, lookup, tuple(pools), bytes(stops), tuple(routes), native, warmup, tracker,
        tuple(l1_routes) if l1 is not None else (),
    )  # fmt: skip
