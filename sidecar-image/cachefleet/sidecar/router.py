"""Which shard serves a key, and multi-key commands split across shards and put back together.

A ``Routing`` is one immutable snapshot (ring look-up plus the shard pools it names); a config
reload builds a new one and swaps it in, so every request sees exactly one ring. The plain
ring route is inlined on the hot path in ``server``; later route units (warm-up shadowing, the
gutter, L1) wrap ``Routing.route`` per request, mcrouter style, without touching the codec.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cachefleet.sidecar import resp
from cachefleet.sidecar.commands import CommandSpec, Split
from cachefleet.sidecar.pool import ShardPool
from cachefleet.sidecar.resp import Bytes
from cachefleet.sidecar.slots import PartSlot, ReplySink, Slot

if TYPE_CHECKING:
    from cachefleet.sidecar._speedups import Ring as NativeRing


@dataclass(frozen=True, eq=False)
class Routing:
    version: str
    lookup: Callable[[bytes], int]
    pools: tuple[ShardPool, ...]  # in ring shard-index order
    native_ring: NativeRing | None = None  # the same look-up in C, for the request scanner

    def route(self, key: bytes) -> ShardPool:
        return self.pools[self.lookup(key)]


class SplitRequest:
    """A multi-key command sent as one sub-request per shard; fills the client's slot when the
    last part answers. An error from any part becomes the reply (like Redis, all or error)."""

    __slots__ = ("kind", "positions", "remaining", "replies", "slot", "total")

    def __init__(self, slot: Slot, kind: Split, parts: int, total: int) -> None:
        self.slot = slot
        self.kind = kind
        self.remaining = parts
        self.replies: list[bytes] = [b""] * parts
        self.positions: list[list[int]] = []
        self.total = total

    def part_done(self, slot: Slot, reply: bytes) -> None:
        self.replies[slot.index] = reply
        self.remaining -= 1
        if self.remaining == 0:
            self.slot.fill(self.assemble())

    def assemble(self) -> bytes:
        for reply in self.replies:
            if resp.is_error(reply):
                return reply
        kind = self.kind
        if kind == Split.SUM:
            total = 0
            for reply in self.replies:
                value = resp.integer_value(reply)
                if value is None:
                    return resp.error("ERR unexpected reply from a shard")
                total += value
            return resp.integer(total)
        if kind == Split.OK:
            return resp.OK
        values: list[bytes] = [b""] * self.total
        for reply, positions in zip(self.replies, self.positions, strict=True):
            elements = resp.array_elements(reply)
            if elements is None or len(elements) != len(positions):
                return resp.error("ERR unexpected reply from a shard")
            for position, element in zip(positions, elements, strict=True):
                values[position] = element
        return resp.array(values)


def split(
    routing: Routing,
    spec: CommandSpec,
    args: Sequence[bytes],
    raw: Bytes,
    client: ReplySink,
    protocol: int,
    client_id: int,
) -> Slot:
    """Send a SPLIT command; returns the client's slot (queued by the caller)."""
    step = spec.step
    lookup = routing.lookup
    groups: dict[int, list[int]] = {}
    for position, i in enumerate(range(1, len(args), step)):
        groups.setdefault(lookup(args[i]), []).append(position)
    slot = Slot(client)
    pools = routing.pools
    if len(groups) == 1:
        # All keys on one shard: forward the original bytes, the shard's reply is the answer.
        (index,) = groups
        _send(pools[index], spec, protocol, client_id, raw, slot)
        return slot
    assert spec.split is not None
    request = SplitRequest(slot, spec.split, len(groups), (len(args) - 1) // step)
    name = args[0]
    for part, (index, positions) in enumerate(groups.items()):
        sub_args = [name]
        for position in positions:
            first = 1 + position * step
            sub_args.extend(args[first : first + step])
        request.positions.append(positions)
        _send(
            pools[index],
            spec,
            protocol,
            client_id,
            resp.encode_request(sub_args),
            PartSlot(request, part),
        )
    return slot


def _send(
    pool: ShardPool, spec: CommandSpec, protocol: int, client_id: int, raw: Bytes, slot: Slot
) -> None:
    conns = pool.conns[protocol]
    counts = pool.requests
    counts[spec] = counts.get(spec, 0) + 1
    conns[client_id % len(conns)].send(raw, slot)


def send_same_shard(
    routing: Routing,
    spec: CommandSpec,
    keys: Sequence[bytes],
    raw: Bytes,
    client: ReplySink,
    protocol: int,
    client_id: int,
) -> Slot:
    """Forward a command whose keys must live together; an error naming it when they do not."""
    lookup = routing.lookup
    indexes = {lookup(key) for key in keys}
    slot = Slot(client)
    if len(indexes) != 1:
        slot.reply = resp.error(
            f"ERR {spec.name.upper()} is not supported by cachefleet across shards: its keys "
            "live on different shards (put them under one hash tag, like {user1}a and {user1}b)"
        )
        return slot
    (index,) = indexes
    _send(routing.pools[index], spec, protocol, client_id, raw, slot)
    return slot
