"""Reply slots: where a request's reply lands, so replies leave in request order.

Each client connection queues one Slot per request; backends fill them in whatever order the
shards answer, and the client flushes the filled prefix of its queue. A Slot whose client has
gone away is still filled by its shard (the reply must be consumed to keep the pipeline in
step) and then simply dropped.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Protocol

from cachefleet.sidecar.speedups import SlotCore


class ReplySink(Protocol):
    """A client connection, as seen by whoever fills its slots."""

    dirty: bool
    closing: bool
    pending: collections.deque[Slot]
    transport: asyncio.Transport | None
    fd: int  # the transport's socket, for write_now (-1: write through the transport)

    def mark_dirty(self) -> None: ...


class PartSink(Protocol):
    """Something that owns a Slot whose reply it post-processes (a split request, a handshake)."""

    def part_done(self, slot: Slot, reply: bytes) -> None: ...


class Slot(SlotCore):
    """A pending reply for ``client`` (None for a PartSlot, whose ``parent`` takes the reply).

    Plain slots are allocated once per request, so they carry two fields and nothing else
    (in their base: in C with the extension, where the C loops reach them by offset).
    """

    __slots__ = ()

    parent: PartSink | None = None
    index: int = 0

    def __init__(self, client: ReplySink | None) -> None:
        self.client = client
        self.reply: bytes | None = None

    def fill(self, reply: bytes) -> None:
        """Deliver a reply (used off the hot path; backends inline the same steps)."""
        client = self.client
        if client is not None:
            self.reply = reply
            if not client.dirty:
                client.mark_dirty()
        elif self.parent is not None:
            self.parent.part_done(self, reply)


class PartSlot(Slot):
    """A reply that ``parent`` post-processes: one part of a split request, or a handshake."""

    __slots__ = ("index", "parent")

    def __init__(self, parent: PartSink, index: int = 0) -> None:
        self.client = None
        self.reply = None
        self.parent = parent
        self.index = index
