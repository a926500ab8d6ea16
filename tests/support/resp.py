"""Raw RESP on a plain socket: encode commands, and cut the byte stream into whole replies.

Tests compare replies byte for byte (a RESP3 map must arrive as ``%``, not as ``*``), so this
reader keeps each reply's exact bytes instead of decoding them.
"""

from __future__ import annotations

import socket
import time

# Types whose payload is one line, with a length, or with a count of nested replies.
_LINE = b"+-:,_#("
_BLOB = b"$=!"
_AGGREGATE = b"*~>"
_PAIRS = b"%|"


def encode(*args: bytes | str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class Incomplete(Exception):
    """The buffer ends inside a reply."""


def reply_end(buffer: bytes, start: int = 0) -> int:
    """Index just past the reply starting at ``start``; raises Incomplete or ValueError."""
    if start >= len(buffer):
        raise Incomplete
    line_end = buffer.find(b"\r\n", start)
    if line_end < 0:
        raise Incomplete
    kind, header = buffer[start : start + 1], buffer[start + 1 : line_end]
    position = line_end + 2
    if kind in (b"\n", b"") or kind[0] not in b"+-:,_#($=!*~>%|":
        raise ValueError(f"not a RESP reply at byte {start}: {buffer[start : start + 20]!r}")
    if kind[0] in _LINE:
        return position
    length = int(header)
    if kind[0] in _BLOB:
        if length < 0:
            return position
        if len(buffer) < position + length + 2:
            raise Incomplete
        return position + length + 2
    if length < 0:
        return position
    count = length * 2 if kind[0] in _PAIRS else length
    for _ in range(count):
        position = reply_end(buffer, position)
    return position


def split_replies(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Whole replies at the front of ``buffer`` and the unfinished rest."""
    replies: list[bytes] = []
    position = 0
    while True:
        try:
            end = reply_end(buffer, position)
        except Incomplete:
            return replies, buffer[position:]
        replies.append(buffer[position:end])
        position = end


class RawConnection:
    """A socket that sends raw bytes and reads whole raw replies, with a hard timeout."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.pending = b""
        self.closed_by_peer = False

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_replies(self, count: int) -> list[bytes]:
        """Exactly ``count`` replies; raises ConnectionError if the peer closes first."""
        deadline = time.monotonic() + self.timeout
        replies, self.pending = split_replies(self.pending)
        while len(replies) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"got {len(replies)} of {count} replies: {replies!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                self.closed_by_peer = True
                raise ConnectionError(f"closed after {len(replies)} of {count} replies")
            more, self.pending = split_replies(self.pending + chunk)
            replies += more
        # Replies beyond ``count`` belong to the caller's next read.
        self.pending = b"".join(replies[count:]) + self.pending
        return replies[:count]

    def call(self, *args: bytes | str | int) -> bytes:
        self.send(encode(*args))
        return self.read_replies(1)[0]

    def read_until_closed(self, timeout: float) -> tuple[bytes, bool]:
        """Everything the peer sends within ``timeout``; True if it closed the connection."""
        deadline = time.monotonic() + timeout
        received = self.pending
        self.pending = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return received, False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
