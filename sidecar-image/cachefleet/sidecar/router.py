"""Multi-key commands: split across their destinations and put back together, or forwarded
whole when their keys must live together.

Every key's destination comes from the route table (``RouteTable.destination``), so a part for
an ejected shard goes to the gutter like a single-key request would.
"""

from __future__ import annotations

from collections.abc import Sequence

from cachefleet.sidecar import resp
from cachefleet.sidecar.commands import CommandSpec, Split, across_shards_error
from cachefleet.sidecar.resp import Bytes
from cachefleet.sidecar.route_table import Outgoing, Route, RouteTable
from cachefleet.sidecar.slots import PartSlot, ReplySink, Slot


class SplitRequest:
    """A multi-key command sent as one sub-request per shard; fills the client's slot when the
    last part answers. An error from any part becomes the reply (like Redis, all or error)."""

    __slots__ = ("kind", "positions", "remaining", "replies", "slot", "total")

    retryable = True  # a part in flight on a failed connection may be sent elsewhere

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
    table: RouteTable,
    spec: CommandSpec,
    args: Sequence[bytes],
    raw: Bytes,
    client: ReplySink,
    protocol: int,
    client_id: int,
) -> Slot:
    """Send a SPLIT command; returns the client's slot (queued by the caller)."""
    step = spec.step
    destination = table.destination
    groups: dict[Route, list[int]] = {}
    for position, i in enumerate(range(1, len(args), step)):
        groups.setdefault(destination(args[i]), []).append(position)
    slot = Slot(client)
    if len(groups) == 1:
        # All keys in one place: forward the original bytes, its reply is the answer.
        (route,) = groups
        route.send(Outgoing(spec, args[1::step], raw, slot, protocol, client_id))
        return slot
    assert spec.split is not None
    request = SplitRequest(slot, spec.split, len(groups), (len(args) - 1) // step)
    name = args[0]
    for part, (route, positions) in enumerate(groups.items()):
        sub_args = [name]
        for position in positions:
            first = 1 + position * step
            sub_args.extend(args[first : first + step])
        request.positions.append(positions)
        raw_part = resp.encode_request(sub_args)
        part_slot = PartSlot(request, part)
        route.send(Outgoing(spec, sub_args[1::step], raw_part, part_slot, protocol, client_id))
    return slot


def send_same_shard(
    table: RouteTable,
    spec: CommandSpec,
    keys: Sequence[bytes],
    raw: Bytes,
    client: ReplySink,
    protocol: int,
    client_id: int,
) -> Slot:
    """Forward a command whose keys must live together; an error naming it when they do not."""
    lookup = table.lookup
    owners = {lookup(key) for key in keys}
    slot = Slot(client)
    if len(owners) != 1:
        slot.reply = resp.error(across_shards_error(spec))
        return slot
    # The first key decides where the whole command goes, so keys that live together on a
    # shard stay together on the gutter while it is ejected.
    table.destination(keys[0]).send(Outgoing(spec, keys, raw, slot, protocol, client_id))
    return slot
