"""One write per connection per event-loop tick.

Backends and clients that got output during a tick register here once; a single callback at
the end of the tick writes each one's gathered bytes in one ``transport.write``. Measured:
writing once per request instead halves throughput under pipelining.

Small batches are held for one more poll of the event loop. When a tick queued more than one
request but fewer than ``HOLD_UNDER_PER_SHARD`` per shard written to (many clients, each with
one request in flight: the loop is busy and more requests are likely ready), the shard writes
wait for one more poll (the clients' replies still leave at once), so the requests that poll
finds leave in the same writes: fewer, larger writes to the shards, each of which costs a
system call here and a wake-up and a read in Redis. A lone request is written at once, so an
idle sidecar adds no delay; pipelined batches are large already and are written at once too
(holding them cost 8-11% of the requests/s at pipeline 16).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sized
from typing import Protocol, cast

from cachefleet.sidecar.speedups import make_native_flusher


class Flushable(Protocol):
    dirty: bool

    def flush(self) -> None: ...


class FlushableShard(Flushable, Protocol):
    @property
    def out(self) -> Sized:  # the requests queued for the next write
        ...


# A tick's shard writes wait for one more poll when they carry fewer requests than this per
# shard written to (and more than one in all).
HOLD_UNDER_PER_SHARD = 8


class Flusher:
    __slots__ = ("_loop", "backends", "clients", "held", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.backends: list[FlushableShard] = []
        self.clients: list[Flushable] = []
        self.scheduled = False
        self.held = False

    def add_backend(self, backend: FlushableShard) -> None:
        backend.dirty = True
        self.backends.append(backend)
        self._schedule()

    def add_client(self, client: Flushable) -> None:
        client.dirty = True
        self.clients.append(client)
        self._schedule()

    def run(self) -> None:
        self.scheduled = False
        if not self.held and self.backends and self._worth_holding():
            self.held = True
            clients, self.clients = self.clients, []
            _flush_each(clients)
            self._schedule()  # unless a client's flush registered something and did already
            return
        self.held = False
        # Backends first: requests parsed this tick go out before we look at clients again.
        # Each list is swapped for a new one first: what the flushes register goes round again.
        while self.backends or self.clients:
            backends, self.backends = self.backends, []
            _flush_each(backends)
            clients, self.clients = self.clients, []
            _flush_each(clients)

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self._loop.call_soon(self.run)

    def _worth_holding(self) -> bool:
        """Whether this tick's shard writes are small batches worth one more poll."""
        queued = sum(len(backend.out) for backend in self.backends)
        return 2 <= queued < HOLD_UNDER_PER_SHARD * len(self.backends)


def _flush_each(connections: Iterable[Flushable]) -> None:
    for connection in connections:
        connection.dirty = False
        connection.flush()


def make_flusher(loop: asyncio.AbstractEventLoop) -> Flusher:
    """``_speedups.Flusher`` (the same methods, called without a Python frame) when the C
    extension is built, else the class above."""
    if make_native_flusher is not None:
        return cast(Flusher, make_native_flusher(loop))
    return Flusher(loop)
