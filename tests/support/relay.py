"""A TCP relay in front of a server, to make it slow or cut it off without touching it.

It runs its own event loop in a thread, so tests and benches that drive subprocesses can use it
as they are. ``delay`` holds every chunk the server sends for that many seconds (order kept),
which turns a healthy Redis into a gray failure; ``cut`` drops every connection and refuses new
ones from then on (a partition between one client and the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tests.support.ports import free_port


class Relay:
    def __init__(self, target_port: int, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.delay = delay
        self.cut_off = False
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- control, from any thread -------------------------------------------------------------

    def cut(self) -> None:
        """Drop every connection through the relay and refuse new ones."""
        self.cut_off = True
        asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(5)

    # -- life ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("relay did not start")

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop_all()

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.cut_off:
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, server_w))
        upstream = asyncio.create_task(self._pump(client_r, server_w, delayed=False))
        downstream = asyncio.create_task(self._pump(server_r, client_w, delayed=True))
        await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
        for task in (upstream, downstream):
            task.cancel()
        for writer in (client_w, server_w):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if delayed and self.delay > 0:
                    # Each chunk leaves ``delay`` after it came; call_later keeps their order.
                    loop.call_later(self.delay, _write, writer, data)
                else:
                    writer.write(data)


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if not writer.transport.is_closing():
        writer.write(data)


@contextlib.contextmanager
def relay(target_port: int, delay: float = 0.0) -> Iterator[Relay]:
    running = Relay(target_port, delay)
    running.start()
    try:
        yield running
    finally:
        running.stop()
