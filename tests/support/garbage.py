"""Garbage for the request parser: random bytes, broken frames, huge declared lengths.

Shared by the fuzz tests (a few seconds) and ``bench/sidecar_garbage.py`` (a minute), so both
throw the same kinds of abuse at the sidecar.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

from tests.support.resp import encode, split_replies

VALID = [
    encode("SET", "g:key", "value"),
    encode("GET", "g:key"),
    encode("MGET", "g:a", "g:b", "g:key"),
    encode("HSET", "g:h", "f", "v"),
    encode("PING"),
    encode("DEL", "g:a", "g:key"),
]


def huge_lengths(cap: int) -> list[bytes]:
    """Frames that declare more than the request cap (and more than any memory)."""
    return [
        b"*1\r\n$999999999999\r\n",
        b"*999999999999\r\n",
        b"*2\r\n$3\r\nGET\r\n$%d\r\nxxxx" % (cap + 1),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (cap * 4),
        b"*%d\r\n" % (cap + 1),
        b"*1\r\n$536870913\r\n",
        b"*1\r\n$-2\r\n",
        b"*1\r\n$" + b"9" * 40 + b"\r\n",
    ]


def mutate(frame: bytes, rng: random.Random) -> bytes:
    """A valid frame with a few bytes flipped, dropped, inserted or the tail cut."""
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(data) + 1)
        action = rng.randrange(4)
        if action == 0 and position < len(data):
            data[position] = rng.randrange(256)
        elif action == 1 and position < len(data):
            del data[position]
        elif action == 2:
            data[position:position] = rng.choice([b"\r\n", b"*", b"$", b"-1", b"\x00", b"9999"])
        else:
            del data[position:]
    return bytes(data)


def garbage(rng: random.Random, cap: int) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randint(1, 2048))
    if kind == 1:
        return b"".join(mutate(rng.choice(VALID), rng) for _ in range(rng.randint(1, 5)))
    if kind == 2:
        frame = b"".join(rng.choices(VALID, k=rng.randint(1, 5)))
        return frame[: rng.randrange(1, len(frame))]
    if kind == 3:
        return rng.choice(huge_lengths(cap))
    return b"*1\r\n" * rng.randint(1, 200) + rng.randbytes(rng.randint(0, 64))


@dataclass
class SoakStats:
    connections: int = 0
    bytes_sent: int = 0
    replies: int = 0
    error_replies: int = 0
    closed_by_sidecar: int = 0
    invalid_replies: int = 0
    refused_connections: int = 0
    examples: list[str] = field(default_factory=list)


async def _one_connection(port: int, payload: bytes, stats: SoakStats, wait: float) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        stats.refused_connections += 1
        return
    stats.connections += 1
    received = b""
    try:
        writer.write(payload)
        stats.bytes_sent += len(payload)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # so a sidecar waiting for the rest of a frame sees the end
        deadline = time.monotonic() + wait
        while (remaining := deadline - time.monotonic()) > 0:
            chunk = await asyncio.wait_for(reader.read(65536), remaining)
            if not chunk:
                stats.closed_by_sidecar += 1
                break
            received += chunk
    except TimeoutError:
        pass  # still open after ``wait``: allowed, the sidecar may be waiting for more
    except ConnectionError:
        stats.closed_by_sidecar += 1
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    try:
        replies, rest = split_replies(received)
    except ValueError:
        replies, rest = [], received
    stats.replies += len(replies)
    stats.error_replies += sum(reply.startswith(b"-") for reply in replies)
    if rest:
        stats.invalid_replies += 1
        if len(stats.examples) < 5:
            stats.examples.append(f"sent {payload[:60]!r}, got {received[:120]!r}")


async def soak(
    port: int, seconds: float, parallel: int = 8, seed: int = 0, cap: int = 1 << 20
) -> SoakStats:
    """Garbage from ``parallel`` connections at a time for ``seconds``."""
    stats = SoakStats()
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            await _one_connection(port, garbage(rng, cap), stats, wait=1.0)

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return stats
