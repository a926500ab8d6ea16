"""One write per connection per event-loop tick.

Backends and clients that got output during a tick register here once; a single callback at
the end of the tick writes each one's gathered bytes in one ``transport.write``. Measured:
writing once per request instead halves throughput under pipelining.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from cachefleet.sidecar.speedups import make_native_flusher


class Flushable(Protocol):
    dirty: bool

    def flush(self) -> None: ...


class Flusher:
    __slots__ = ("_loop", "backends", "clients", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.backends: list[Flushable] = []
        self.clients: list[Flushable] = []
        self.scheduled = False

    def add_backend(self, backend: Flushable) -> None:
        backend.dirty = True
        self.backends.append(backend)
        if not self.scheduled:
            self.scheduled = True
            self._loop.call_soon(self.run)

    def add_client(self, client: Flushable) -> None:
        client.dirty = True
        self.clients.append(client)
        if not self.scheduled:
            self.scheduled = True
            self._loop.call_soon(self.run)

    def run(self) -> None:
        self.scheduled = False
        # Backends first: requests parsed this tick go out before we look at clients again.
        while self.backends or self.clients:
            backends, self.backends = self.backends, []
            for backend in backends:
                backend.dirty = False
                backend.flush()
            clients, self.clients = self.clients, []
            for client in clients:
                client.dirty = False
                client.flush()


def make_flusher(loop: asyncio.AbstractEventLoop) -> Flusher:
    """``_speedups.Flusher`` (the same methods, called without a Python frame) when the C
    extension is built, else the class above."""
    if make_native_flusher is not None:
        return cast(Flusher, make_native_flusher(loop))
    return Flusher(loop)
