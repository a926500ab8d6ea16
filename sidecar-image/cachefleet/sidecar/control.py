"""The sidecar's own connection to a Redis server: health probes and clean-ups, never client
traffic, so a probe measures the server and not the queue in front of it.

One command batch at a time, pipelined, replies parsed by hiredis (error replies come back as
``hiredis.ReplyError`` values, not raised). A failure closes the connection; the next call
opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import hiredis

from cachefleet.sidecar import resp
from cachefleet.sidecar.pool import ShardSettings

Arg = bytes | str | int
Reply = object
# What CLIENT LIST on a shard shows for this connection, apart from the pooled ones.
CLIENT_NAME = "cachefleet-control"


class ControlError(Exception):
    """The server could not be reached or did not answer in time; ``hard`` when the
    connection was refused, reset or lost (not a plain timeout)."""

    def __init__(self, message: str, hard: bool) -> None:
        super().__init__(message)
        self.hard = hard


def encode(command: Sequence[Arg]) -> bytes:
    return resp.encode_request(
        arg if isinstance(arg, bytes) else str(arg).encode() for arg in command
    )


class ControlConnection:
    def __init__(self, settings: ShardSettings) -> None:
        self.settings = settings
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def call(self, commands: Sequence[Sequence[Arg]], timeout: float) -> list[Reply]:
        """Send ``commands`` in one write; their replies in order. Raises ControlError."""
        async with self._lock:
            try:
                return await asyncio.wait_for(self._call(commands), timeout)
            except TimeoutError:
                self.close()
                raise ControlError(f"no reply within {timeout * 1000:g} ms", hard=False) from None
            except (OSError, EOFError, hiredis.ProtocolError) as error:
                self.close()
                raise ControlError(str(error) or type(error).__name__, hard=True) from None

    async def _call(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        if self._writer is None:
            await self._open()
        assert self._reader is not None and self._writer is not None
        self._writer.write(b"".join(encode(c) for c in commands))
        return await self._read(self._reader, len(commands))

    async def _open(self) -> None:
        settings = self.settings
        reader, writer = await asyncio.open_connection(settings.host, settings.port)
        self._reader, self._writer = reader, writer
        greeting: list[list[Arg]] = []
        if settings.password is not None:
            user = [settings.username] if settings.username else []
            greeting.append(["AUTH", *user, settings.password])
        greeting.append(["CLIENT", "SETNAME", CLIENT_NAME])
        writer.write(b"".join(encode(c) for c in greeting))
        replies = await self._read(reader, len(greeting))
        for command, reply in zip(greeting, replies, strict=True):
            if isinstance(reply, hiredis.ReplyError):
                self.close()
                raise OSError(f"{command[0]!s} refused: {reply}")

    @staticmethod
    async def _read(reader: asyncio.StreamReader, count: int) -> list[Reply]:
        parser = hiredis.Reader()
        replies: list[Reply] = []
        while len(replies) < count:
            reply = parser.gets()
            if reply is False:
                data = await reader.read(65536)
                if not data:
                    raise EOFError("connection closed by the server")
                parser.feed(data)
                continue
            replies.append(reply)
        return replies

    def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.transport.abort()
