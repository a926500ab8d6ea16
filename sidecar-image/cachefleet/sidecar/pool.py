"""Pipelined connections to one shard, shared by every client, replies matched in FIFO order.

A shard gets ``connections_per_shard`` connections per protocol version in use (RESP2 ones at
start, RESP3 ones on the first RESP3 client), so a reply's raw bytes are always in the protocol
of the client that asked. A client always uses the same connection of a shard, so its own
commands to one key stay in order.

A connection that fails (refused, lost, or a reply later than ``request_timeout_ms``) tells its
pool's ``FailureHandler`` first (the health monitor, which may eject the shard), then answers
every request in flight: a read may be retried once elsewhere (the gutter, when the shard was
just ejected), everything else gets ``-ERR shard NAME unavailable: why``. It reconnects with
backoff; requests arriving while it is down get that error at once. Other shards are untouched.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from cachefleet.sidecar import resp
from cachefleet.sidecar.commands import CommandSpec
from cachefleet.sidecar.flusher import Flusher
from cachefleet.sidecar.resp import Bytes, split_replies, split_requests
from cachefleet.sidecar.slots import PartSlot, Slot
from cachefleet.sidecar.speedups import (
    BackendCore,
    make_shard_reader,
    make_shard_writer,
    socket_fd,
)
from cachefleet.sidecar.stats import ShardStats

log = logging.getLogger("cachefleet.sidecar.pool")

BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0

IDLE, CONNECTING, READY, DOWN, CLOSED = range(5)
# What CLIENT LIST on a shard shows for L1's tracking connection.
TRACKING_CLIENT_NAME = b"cachefleet-tracking"


@dataclass(frozen=True)
class ShardSettings:
    name: str
    host: str
    port: int
    connect_timeout: float
    request_timeout: float
    username: str | None
    password: str | None


class FailureHandler(Protocol):
    """Who hears about a shard connection's failures (the health monitor, for ring shards)."""

    def connection_failed(self, pool_name: str, reason: str) -> None:
        """Called before the failed connection answers its requests in flight."""
        ...

    def retry_elsewhere(self, raw: bytes, args: list[bytes], slot: Slot, protocol: int) -> bool:
        """Send one request that was in flight on a failed connection somewhere else (once);
        False when it cannot be (the caller answers it with the connection's error)."""
        ...


class _Handshake:
    """Checks the replies to HELLO/AUTH sent on connect; an error fails the connection."""

    __slots__ = ("backend",)

    def __init__(self, backend: BackendConnection) -> None:
        self.backend = backend

    def part_done(self, slot: Slot, reply: bytes) -> None:
        if resp.is_error(reply) and self.backend.state == READY:
            message = reply[1:-2].decode("utf-8", "replace")
            self.backend.fail(f"handshake refused: {message}")


class BackendConnection(BackendCore, asyncio.Protocol):
    def __init__(
        self,
        settings: ShardSettings,
        protocol: int,
        flusher: Flusher,
        stats: ShardStats,
        failures: FailureHandler | None = None,
        tracking: bool = False,
    ) -> None:
        self.settings = settings
        self.protocol = protocol
        self.flusher = flusher
        self.failures_to = failures
        # A RESP3 connection with CLIENT TRACKING on (L1's): the shard pushes invalidations.
        self.tracking = tracking
        self.on_push: Callable[[bytes], None] | None = None  # RESP3 push frames go here
        self.on_ready: Callable[[], None] | None = None  # called each time it (re)connects
        self.latency = stats.latency
        self.state = IDLE
        self.transport: asyncio.Transport | None = None
        self.fd = -1  # the transport's socket, for write_now
        self.out: list[Bytes] = []
        self.waiters: collections.deque[Slot] = collections.deque()
        self.rest = b""
        self.dirty = False
        self.sent = 0
        self.received = 0
        # (requests sent up to it, time, its bytes, its request count) per write: latency and
        # timeouts without per-request clocks, and the requests in flight when it fails. The
        # time is time.monotonic(): uvloop's loop.time() ticks in whole milliseconds, coarser
        # than a shard round trip.
        self.marks: collections.deque[tuple[int, float, Bytes, int]] = collections.deque()
        self.down_reason = ""
        self.failures = 0
        self.retiring = False
        self._loop = asyncio.get_running_loop()
        self._connector: asyncio.Task[None] | None = None
        self._down_error = b""
        if make_shard_reader is not None and make_shard_writer is not None:
            # The C versions of data_received and flush: uvloop looks data_received up each
            # time it makes a transport for this connection, then calls it for every read;
            # the flusher calls flush once per loop turn this connection has output.
            # None: they read the marks' clock (time.monotonic's) in C.
            vars(self)["data_received"] = make_shard_reader(
                self, flusher.add_client, self.latency.observe, None, self.marks
            )
            vars(self)["flush"] = make_shard_writer(self, None, self.marks)

    # -- sending ---------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """Connected or connecting: a request sent now is not answered "unavailable" at once."""
        return self.state not in (DOWN, CLOSED)

    def send(self, raw: Bytes, slot: Slot) -> None:
        state = self.state
        if state in (READY, CONNECTING):
            self.out.append(raw)
            self.waiters.append(slot)
            if not self.dirty and state == READY:
                self.flusher.add_backend(self)
        elif state == IDLE:
            self.out.append(raw)
            self.waiters.append(slot)
            self.connect()
        else:
            slot.fill(self._down_error)

    def flush(self) -> None:
        """The reference: with the C extension, ``_speedups.ShardWriter`` (set in __init__)."""
        out = self.out
        if not out or self.transport is None:
            return
        self.out = []
        data = out[0] if len(out) == 1 else b"".join(out)
        self.transport.write(data)
        self.sent += len(out)
        self.marks.append((self.sent, time.monotonic(), data, len(out)))

    # -- receiving -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """The reference: with the C extension, ``_speedups.ShardReader`` (set in __init__)
        takes every read instead, and hands buffers it does not claim to _deliver_in_python."""
        if self.rest:
            buf = self.rest + data
            self.rest = b""
        else:
            buf = data
        self._deliver_in_python(buf)

    def _deliver_in_python(self, buf: bytes) -> None:
        replies, pos = split_replies(buf)
        waiters = self.waiters
        flusher = self.flusher
        for raw in replies:
            if raw[:1] == b">":  # a RESP3 push frame (an invalidation), not a reply
                if self.on_push is not None:
                    self.on_push(raw)
                continue
            if not waiters:
                self.fail("a reply arrived that nobody asked for")
                return
            slot = waiters.popleft()
            client = slot.client
            if client is not None:
                pending = client.pending
                if len(pending) == 1 and pending[0] is slot and not client.closing:
                    # The client's only request: nothing to gather or order, answer now.
                    pending.popleft()
                    transport = client.transport
                    if transport is not None:
                        transport.write(raw)
                else:
                    slot.reply = raw
                    if not client.dirty:
                        flusher.add_client(client)  # type: ignore[arg-type]
            elif slot.parent is not None:
                slot.parent.part_done(slot, raw)
        self._received(buf, pos, len(replies))

    def _received(self, buf: bytes, pos: int, count: int) -> None:
        """Keep the incomplete rest; account ``count`` replies (latency per write)."""
        if pos < len(buf):
            self.rest = buf[pos:]
        if count:
            self.received += count
            marks = self.marks
            if marks and marks[0][0] <= self.received:
                now = time.monotonic()
                observe = self.latency.observe
                while marks and marks[0][0] <= self.received:
                    observe(now - marks.popleft()[1])

    # -- connection life -------------------------------------------------------------------

    def connect(self) -> None:
        if self.state in (CONNECTING, READY, CLOSED) or self.retiring:
            return
        self.state = CONNECTING
        self._connector = self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        settings = self.settings
        try:
            await asyncio.wait_for(
                self._loop.create_connection(lambda: self, settings.host, settings.port),
                settings.connect_timeout,
            )
        except (OSError, TimeoutError) as error:
            reason = str(error) or type(error).__name__
            if isinstance(error, TimeoutError):
                reason = f"connect timed out after {settings.connect_timeout:g}s"
            self.fail(reason)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.state == CLOSED:
            transport.close()
            return
        self.transport = transport
        self.fd = socket_fd(transport)
        self.state = READY
        self.rest = b""
        self.sent = self.received = 0
        self.marks.clear()
        greeting = self._greeting()
        handshake = _Handshake(self)
        for _ in greeting:
            self.waiters.appendleft(PartSlot(handshake))
        self.out[:0] = list(greeting)
        if self.failures:
            log.info("shard %s: connected again (RESP%d)", self.settings.name, self.protocol)
        self.failures = 0
        self.flush()
        if self.on_ready is not None:
            self.on_ready()

    def _greeting(self) -> list[bytes]:
        settings = self.settings
        password = settings.password
        if self.protocol == 3:
            args = [b"HELLO", b"3"]
            if password is not None:
                args += [b"AUTH", (settings.username or "default").encode(), password.encode()]
            hello = [resp.encode_request(args)]
            if self.tracking:
                hello.append(resp.encode_request([b"CLIENT", b"SETNAME", TRACKING_CLIENT_NAME]))
                hello.append(resp.encode_request([b"CLIENT", b"TRACKING", b"ON"]))
            return hello
        if password is None:
            return []
        user = [settings.username.encode()] if settings.username else []
        return [resp.encode_request([b"AUTH", *user, password.encode()])]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.state in (READY, CONNECTING):
            self.fail(f"connection lost{': ' + str(exc) if exc else ''}")

    def fail(self, reason: str) -> None:
        """Drop the connection, answer everything in flight (retrying reads elsewhere when the
        failure handler can), and reconnect later."""
        if self.state == CLOSED:
            return
        name = self.settings.name
        if self.failures % 30 == 0:  # the first failure, then about once a minute while down
            log.warning("shard %s unavailable (RESP%d): %s", name, self.protocol, reason)
        self.state = DOWN
        self.down_reason = reason
        self._down_error = resp.error(f"ERR shard {name} unavailable: {reason}")
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
        in_flight = self._in_flight_requests()
        waiters, self.waiters = self.waiters, collections.deque()
        self.out = []
        self.rest = b""
        self.marks.clear()
        self.failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failures - 1))
        self._loop.call_later(delay, self._retry)
        handler = self.failures_to
        if handler is None or self.retiring:
            for slot in waiters:
                slot.fill(self._down_error)
            return
        handler.connection_failed(name, reason)  # may eject the shard: then retries go elsewhere
        if len(in_flight) != len(waiters):
            in_flight = []  # cannot tell which request is which: answer them all
        for index, slot in enumerate(waiters):
            if index < len(in_flight):
                raw, args = in_flight[index]
                if handler.retry_elsewhere(raw, args, slot, self.protocol):
                    continue
            slot.fill(self._down_error)

    def _in_flight_requests(self) -> list[tuple[bytes, list[bytes]]]:
        """The requests the waiters wait for, in order: the unanswered part of what was
        written, then what was not written yet."""
        marks = self.marks
        written = b"".join(mark[2] for mark in marks)
        requests = split_requests(written) if written else []
        if marks:
            sent_before, _, _, count = marks[0]
            del requests[: max(self.received - (sent_before - count), 0)]
        for raw in self.out:
            requests.extend(split_requests(raw))
        return requests

    def _drain_with(self, reply: bytes) -> None:
        self.out = []
        self.rest = b""
        self.marks.clear()
        waiters, self.waiters = self.waiters, collections.deque()
        for slot in waiters:
            slot.fill(reply)

    def _retry(self) -> None:
        if self.state == DOWN and not self.retiring:
            self.state = IDLE
            self.connect()

    def reconnect_now(self) -> None:
        """Skip the rest of the backoff (a re-admitted shard must not answer "unavailable")."""
        self._retry()

    def check_timeout(self, now: float) -> None:
        marks = self.marks
        timeout = self.settings.request_timeout
        if marks and now - marks[0][1] > timeout:
            self.fail(f"no reply within {timeout * 1000:g} ms")

    @property
    def drained(self) -> bool:
        return not self.waiters and not self.out

    def close(self) -> None:
        self.state = CLOSED
        vars(self).pop("data_received", None)  # they hold this object: no cycle left behind
        vars(self).pop("flush", None)
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()
        self._drain_with(resp.error(f"ERR shard {self.settings.name} was removed from the ring"))


class ShardPool:
    """The connections to one shard: ``conns[protocol]`` is a list of ``size`` connections."""

    def __init__(
        self,
        settings: ShardSettings,
        size: int,
        flusher: Flusher,
        stats: ShardStats,
        failures: FailureHandler | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.size = size
        self.stats = stats
        self.c_requests = stats.c_requests  # bumped by the C loop
        self.python_requests = stats.python_requests  # bumped by the Python paths
        self.conns: dict[int, list[BackendConnection]] = {
            protocol: [
                BackendConnection(settings, protocol, flusher, stats, failures) for _ in range(size)
            ]
            for protocol in (2, 3)
        }

    def start(self) -> None:
        """RESP2 connections open at once; RESP3 ones when a RESP3 client first needs them."""
        for conn in self.conns[2]:
            conn.connect()

    def connections(self) -> list[BackendConnection]:
        return [c for conns in self.conns.values() for c in conns]

    def connection(self, protocol: int, client_id: int) -> BackendConnection:
        """The client's connection: the same one for all its requests, so they keep their order."""
        conns = self.conns[protocol]
        return conns[client_id % len(conns)]

    def count(self, spec: CommandSpec) -> None:
        """A request sent by a Python path (the C loop counts its own in ``c_requests``)."""
        counts = self.python_requests
        counts[spec] = counts.get(spec, 0) + 1

    def open_connections(self, protocol: int) -> int:
        return sum(1 for c in self.conns[protocol] if c.state == READY)

    def check_timeouts(self, now: float) -> None:
        for conn in self.connections():
            conn.check_timeout(now)

    def retire(self) -> None:
        for conn in self.connections():
            conn.retiring = True

    @property
    def drained(self) -> bool:
        return all(conn.drained for conn in self.connections())

    def close(self) -> None:
        for conn in self.connections():
            conn.close()
