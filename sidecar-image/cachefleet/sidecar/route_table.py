"""The route table: one routing snapshot, compiled so that each request is decided once.

A config apply, an ejection or a re-admission builds a new table and swaps it in; requests
already queued keep the connections they were given. The decision for a key is its owner on the
ring, then ``stops[owner]``: 0 queues it on the fast path to the owner's connection, anything
else (a ``Reason``) hands that one request to a route unit instead, and the next request of the
same buffer is back on the fast path. The C loop (``_speedups.route_requests``) reads the same
``stops`` through ``native``; the Python loop in ``server`` reads them here. Everything that is
not a plain single-key command (multi-key commands, a route unit's request, a retry) asks
``destination(key)``, which names the ``Route`` that sends it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

from cachefleet.sidecar import resp
from cachefleet.sidecar.commands import COMMANDS, CommandSpec, Kind
from cachefleet.sidecar.resp import Bytes
from cachefleet.sidecar.slots import Slot
from cachefleet.sidecar.speedups import make_route_table

if TYPE_CHECKING:
    from cachefleet.sidecar._speedups import Ring as NativeRing
    from cachefleet.sidecar._speedups import RouteTable as NativeRouteTable
    from cachefleet.sidecar.pool import ShardPool


class Reason(IntEnum):
    """Why a request leaves the fast path (0 in ``stops``: it does not)."""

    FAST = 0
    GUTTER = 1  # the owner is ejected: the gutter pool serves its keys
    HOLD = 2  # the owner is being re-admitted: its requests wait for the clean-up


# The commands the fast paths queue themselves: one key, right after the command name.
FAST_COMMANDS: dict[bytes, tuple[CommandSpec, int]] = {
    name: (spec, spec.arity)
    for name, spec in COMMANDS.items()
    if spec.kind is Kind.SINGLE and spec.key_index == 1
}


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
        counts = pool.python_requests
        counts[request.spec] = counts.get(request.spec, 0) + 1
        conns = pool.conns[request.protocol]
        conns[request.client_id % len(conns)].send(request.raw, request.slot)


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
    pools: tuple[ShardPool, ...]  # by owner (ring shard index)
    stops: bytes  # by owner: a Reason, 0 for the fast path
    routes: tuple[OwnerRoute, ...]  # by owner: ShardRoute, or the route unit of its reason
    native: NativeRouteTable | None = None  # the same table for the C loop

    @property
    def plain(self) -> bool:
        """Nothing leaves the fast path."""
        return not any(self.stops)

    def decide(self, key: bytes) -> tuple[int, int]:
        """(owner, reason): the decision the fast paths take, for tests and tools."""
        owner = self.lookup(key)
        return owner, self.stops[owner]

    def destination(self, key: bytes) -> Route:
        return self.routes[self.lookup(key)].for_key(key)


def build_route_table(
    version: str,
    lookup: Callable[[bytes], int],
    native_ring: NativeRing | None,
    pools: Sequence[ShardPool],
    diverted: Mapping[int, tuple[Reason, OwnerRoute]],
) -> RouteTable:
    """A table over ``pools`` (by owner) where the owners in ``diverted`` go to a route unit."""
    routes: list[OwnerRoute] = [ShardRoute(pool) for pool in pools]
    stops = bytearray(len(pools))
    for owner, (reason, route) in diverted.items():
        stops[owner] = reason
        routes[owner] = route
    native = None
    if make_route_table is not None and native_ring is not None:
        native = make_route_table(native_ring, FAST_COMMANDS, bytes(stops))
    return RouteTable(version, lookup, tuple(pools), bytes(stops), tuple(routes), native)
