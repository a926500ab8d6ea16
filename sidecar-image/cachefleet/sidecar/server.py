"""Client connections: parse requests, route them, send replies back in request order.

Each request is decided once, from the route table (``route_table``): a plain single-key
command whose owner has no stop is queued on the owner's connection right there (the fast
path); anything else goes to ``_dispatch``, off the fast path, one request at a time, and the
next request is back on the fast path. With the C extension, ``_speedups.route_requests`` does
the fast path's steps for every request it queues and returns at the first one it does not;
without it, or from bytes it does not claim, hiredis parses and ``_process`` does the same
steps in Python (``resp.request_end`` gives each request's span). Either way the original bytes
go to the shard.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from typing import TYPE_CHECKING, cast

import hiredis

from cachefleet.config.keys import OWN_KEY_PREFIX_BYTES, is_own_key
from cachefleet.sidecar import handshake, resp
from cachefleet.sidecar.commands import (
    COMMANDS,
    CommandSpec,
    Kind,
    keyless_error,
    keys_of,
    lookup,
    own_key_error,
    refused_error,
    unknown_command_error,
    wrong_arity_error,
)
from cachefleet.sidecar.pool import READY, BackendConnection
from cachefleet.sidecar.resp import Bytes, ProtocolError, request_end
from cachefleet.sidecar.route_table import FAST_COMMANDS, Outgoing, RouteTable, whole_key_hash
from cachefleet.sidecar.router import send_same_shard, split
from cachefleet.sidecar.slots import Slot
from cachefleet.sidecar.speedups import (
    ClientCore,
    make_client_writer,
    make_fast_reader,
    socket_fd,
)
from cachefleet.sidecar.speedups import route_requests as _route

if TYPE_CHECKING:
    from cachefleet.sidecar.app import Sidecar

log = logging.getLogger("cachefleet.sidecar.server")

MAX_INLINE_BYTES = 64 * 1024  # like Redis's PROTO_INLINE_MAX_SIZE
_ids = itertools.count(1)
Counts = dict[CommandSpec, int]
# Why _speedups.route_requests stopped (the same names in _speedups.c).
STOP_END, STOP_DISPATCH, STOP_UNCLAIMED, STOP_ROUTE = range(4)


def _arguments(raw: bytes) -> list[bytes]:
    """The arguments of one complete request the C scanner cut (off the hot path)."""
    reader = hiredis.Reader()
    reader.feed(raw)
    return cast(list[bytes], reader.gets())


class ClientConnection(ClientCore, asyncio.Protocol):
    def __init__(self, app: Sidecar) -> None:
        self.app = app
        self.flusher = app.flusher
        self.id = next(_ids)
        self.protocol = 2
        self.name: bytes | None = None
        self.authed = app.client_password is None
        self.closing = False
        self.dirty = False
        self.peer = "?"
        self.transport: asyncio.Transport | None = None
        # The transport's socket, for the replies written by write_now (-1: never).
        self.fd = -1
        self.pending: collections.deque[Slot] = collections.deque()
        self.reader = hiredis.Reader()
        self.partial = bytearray()  # bytes of a request not complete yet
        self.resync = False  # the reader was reset; next bytes start at a request boundary
        # True while hiredis parses this connection's requests: always without the C loop,
        # else from a request the C scanner does not claim until the buffer is consumed.
        self.hiredis_mode = _route is None
        # Per owner, the connection this client uses and the counters it bumps; rebuilt when
        # the route table or the protocol changes.
        self.targets: list[tuple[BackendConnection, Counts]] = []
        self.targets_for: RouteTable | None = None
        self.targets_protocol = 0
        # route_requests' arguments after pos (the native table first) while every request so
        # far was queued by it and nothing since could change them (authed, protocol, the parser's
        # mode): FastReader sends the next data straight to C. Reset by any other path, set
        # again after; only with the C extension.
        self.fast: tuple[object, ...] | None = None
        if make_fast_reader is not None:
            # The C version of data_received below: uvloop looks the method up once, when the
            # transport is made, and then calls this object for every read without a frame.
            vars(self)["data_received"] = make_fast_reader(self)
        if make_client_writer is not None:
            # The C version of flush below, which the flusher calls once per loop turn.
            vars(self)["flush"] = make_client_writer(self)

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        self.fd = socket_fd(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = f"{peer[0]}:{peer[1]}"
        self.app.client_opened(self)
        if self.app.stats.client_connections > self.app.config.limits.max_clients:
            self.app.stats.error("max_clients")
            self.reply(resp.error("ERR max number of clients reached"))
            self.closing = True

    def connection_lost(self, exc: Exception | None) -> None:
        # Slots still in flight get their replies from the shard and are dropped: they
        # point at this object, whose transport is gone.
        self.transport = None
        self.fd = -1
        self.closing = True
        self.fast = None  # it holds this object
        vars(self).pop("data_received", None)  # so does the C data_received
        vars(self).pop("flush", None)  # and the C flush
        self.pending.clear()
        self.app.client_closed(self)

    def pause_writing(self) -> None:
        # A client that does not read its replies stops being read: its replies cannot pile up
        # without bound, and nothing it sends holds shard connections meanwhile.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        # With the C extension, _speedups.FastReader (set in __init__) takes every read: it
        # queues the requests of an armed connection (self.fast) itself and hands the rest here.
        self._data_received(data, 0)

    def _route_failed(self, error: BaseException) -> None:
        """FastReader met an unexpected error: it must cost this connection only, never the
        process."""
        log.error("client %s: unexpected error; closing its connection", self.peer, exc_info=error)
        self._protocol_error("internal error in the sidecar")

    def _data_received(self, data: bytes, start: int) -> None:
        """Everything but the common case, from ``data[start:]``."""
        self.fast = None
        if self.closing:
            return
        if start:
            data = data[start:]
        partial = self.partial
        buf: bytes | bytearray
        if partial:
            partial += data
            buf = partial
        else:
            buf = data
        try:
            if self.resync:
                self.resync = False
                pos = self._inline(buf, 0)
                if pos >= 0:
                    pos = self._process(buf, pos)
            elif self.hiredis_mode:
                self.reader.feed(data)
                pos = self._process(buf, 0)
            else:
                pos = self._process_scanned(buf)
        except Exception:  # a bug must cost this connection only, never the process
            log.exception("client %s: unexpected error; closing its connection", self.peer)
            self._protocol_error("internal error in the sidecar")
            return
        if pos < 0:
            return
        size = len(buf)
        if pos >= size:
            # Everything consumed: hiredis holds nothing, the C loop can take over again.
            self.hiredis_mode = _route is None
            if partial:
                self.partial = bytearray()
            if _route is not None and self.authed and not self.resync and not self.closing:
                self._arm_fast()
        else:
            if partial:
                del partial[:pos]
            else:
                self.partial = bytearray(memoryview(buf)[pos:])
            self._check_partial()

    def _process_scanned(self, buf: bytes | bytearray) -> int:
        """``_process`` with the C loop: it queues the fast requests and stops at each other
        one, which goes to ``_dispatch`` alone before the loop resumes after it.

        The C scanner claims only well-formed requests; at anything else hiredis takes over
        from that request's first byte, so odd input behaves exactly as without the C loop."""
        assert _route is not None
        pending_append = self.pending.append
        add_backend = self.flusher.add_backend
        add_client = self.flusher.add_client
        max_bytes = self.app.max_request_bytes
        pos = 0
        while True:
            table = self.app.routes
            targets: list[tuple[BackendConnection, Counts]] | None = self.targets
            if self.targets_for is not table or self.targets_protocol != self.protocol:
                targets = self._build_targets(table)
            if not self.authed:
                targets = None  # everything goes to _dispatch, which asks for AUTH
            assert table.native is not None
            pos, stop, end, _, _ = _route(
                buf, pos, table.native, targets, self, pending_append, Slot, add_backend,
                add_client, READY, max_bytes,
            )  # fmt: skip
            if stop == STOP_END:
                return pos
            if stop == STOP_UNCLAIMED:
                self.hiredis_mode = True
                self.reader = hiredis.Reader()
                self.reader.feed(bytes(buf[pos:]))
                return self._process(buf, pos)
            raw = bytes(buf[pos:end])
            pos = end
            if len(raw) > max_bytes:
                return self._protocol_error(
                    "Protocol error: request is larger than the sidecar's limit"
                )
            # STOP_ROUTE or STOP_DISPATCH: _dispatch asks the route table for this one request.
            args = _arguments(raw)
            self._dispatch(COMMANDS.get(args[0]), args, raw)
            if self.closing:
                return -1

    def _arm_fast(self) -> None:
        """Let the next data go straight to ``_route`` (see ``self.fast``)."""
        table = self.app.routes
        targets = self.targets
        if self.targets_for is not table or self.targets_protocol != self.protocol:
            targets = self._build_targets(table)
        self.fast = (
            table.native,
            targets,
            self,
            self.pending.append,
            Slot,
            self.flusher.add_backend,
            self.flusher.add_client,
            READY,
            self.app.max_request_bytes,
        )

    def _build_targets(self, table: RouteTable) -> list[tuple[BackendConnection, Counts]]:
        """This client's connection and request counters per owner, for one table."""
        protocol = self.protocol
        targets = []
        for pool in table.pools:
            conns = pool.conns[protocol]
            targets.append((conns[self.id % len(conns)], pool.c_requests))
        self.targets = targets
        self.targets_for = table
        self.targets_protocol = protocol
        return targets

    def _process(self, buf: bytes | bytearray, pos: int) -> int:
        """Handle every complete request from ``pos``; returns where the rest starts, or -1
        when the connection is closing."""
        gets = self.reader.gets
        table = self.app.routes
        ring_lookup = table.lookup
        stops = table.stops
        pools = table.pools
        warmup = table.warmup
        protocol = self.protocol
        cid = self.id
        pending = self.pending
        commands = COMMANDS
        fast = FAST_COMMANDS
        tracker = table.tracker
        max_bytes = self.app.max_request_bytes
        flusher = self.flusher
        size = len(buf)
        while True:
            try:
                args = gets()
            except hiredis.ProtocolError as error:
                pos = self._inline(buf, pos, str(error))
                if pos < 0:
                    return -1
                gets = self.reader.gets
                continue
            if args is False:
                return pos
            if type(args) is not list:
                if args is None:  # "*-1": Redis ignores it
                    pos = buf.index(b"\r\n", pos) + 2
                    continue
                return self._protocol_error("Protocol error: expected '*' or an inline command")
            try:
                end = request_end(buf, pos, args)
            except ProtocolError as error:
                return self._protocol_error(str(error))
            if end - pos > max_bytes:
                return self._protocol_error(
                    "Protocol error: request is larger than the sidecar's limit"
                )
            raw = buf if pos == 0 and end == size else buf[pos:end]
            pos = end
            if not args:
                continue
            spec: CommandSpec | None
            fast_entry = fast.get(args[0])
            if fast_entry is not None and self.authed:
                spec, arity, klass = fast_entry
                argc = len(args)
                if (argc == arity if arity > 0 else argc >= -arity) and not args[1].startswith(
                    OWN_KEY_PREFIX_BYTES
                ):
                    # The route table's decision (RouteTable.decide and hot_stop; route_decide
                    # and the tracker in C): queue it here, or fall through to _dispatch and
                    # its route unit.
                    key = args[1]
                    owner = ring_lookup(key)
                    stop = stops[owner] or (warmup is not None and warmup.stops(key, owner, klass))
                    if tracker is not None and table.hot_stop(key, owner, klass):
                        stop = True
                    if not stop:
                        pool = pools[owner]
                        conns = pool.conns[protocol]
                        slot = Slot(self)
                        pending.append(slot)
                        counts = pool.python_requests
                        counts[spec] = counts.get(spec, 0) + 1
                        conn = conns[cid % len(conns)]
                        if conn.state == READY:  # BackendConnection.send, inlined
                            conn.out.append(raw)
                            conn.waiters.append(slot)
                            if not conn.dirty:
                                flusher.add_backend(conn)
                        else:
                            conn.send(raw, slot)
                        continue
            else:
                spec = commands.get(args[0])
            self._dispatch(spec, args, raw)
            if self.closing:
                return -1
            if self.protocol != protocol:
                protocol = self.protocol
            if self.app.routes is not table:
                table = self.app.routes
                ring_lookup = table.lookup
                stops = table.stops
                pools = table.pools
                warmup = table.warmup
                tracker = table.tracker

    # -- everything off the hot path -------------------------------------------------------

    def _dispatch(self, spec: CommandSpec | None, args: list[bytes], raw: Bytes) -> None:
        app = self.app
        if spec is None:
            spec = lookup(args[0])
        if spec is None:
            app.stats.error("unknown_command")
            self.reply(resp.error(unknown_command_error(args)))
            return
        if not self.authed and spec.name not in ("auth", "hello", "quit", "reset"):
            app.stats.error("noauth")
            self.reply(resp.error("NOAUTH Authentication required."))
            return
        if spec.kind == Kind.REFUSED:
            app.stats.error("refused")
            self.reply(resp.error(refused_error(spec)))
            return
        if not spec.arity_ok(len(args)):
            app.stats.error("wrong_arity")
            self.reply(resp.error(wrong_arity_error(spec)))
            return
        kind = spec.kind
        table = app.routes
        if kind == Kind.LOCAL:
            local = app.stats.local_requests
            local[spec] = local.get(spec, 0) + 1
            self.reply(handshake.answer(self, spec, args))
            return
        keys = keys_of(spec, args)
        if any(is_own_key(key) for key in keys):
            # An app's write there could corrupt the gutter's journal or a warm-up's
            # tombstones, and so serve stale data.
            app.stats.error("own_key")
            self.reply(resp.error(own_key_error(spec)))
            return
        tracker = table.tracker
        if kind == Kind.SINGLE:
            (key,) = keys
            slot = Slot(self)
            self.pending.append(slot)
            if tracker is not None and spec.key_index != 1:
                tracker.observe(key, whole_key_hash(key))  # the fast paths counted the others
            table.destination(key).send(Outgoing(spec, keys, raw, slot, self.protocol, self.id))
            return
        if tracker is not None:
            for key in keys:
                tracker.observe(key, whole_key_hash(key))
        if kind == Kind.SPLIT:
            self.queue(split(table, spec, args, raw, self, self.protocol, self.id))
            return
        if not keys:
            app.stats.error("unroutable")
            self.reply(resp.error(keyless_error(spec, "sidecar")))
            return
        self.queue(send_same_shard(table, spec, keys, raw, self, self.protocol, self.id))

    def _inline(self, buf: bytes | bytearray, pos: int, parse_error: str = "") -> int:
        """hiredis stopped at ``pos``: an inline command (``PING\\r\\n``) or garbage.

        Inline lines are handled here one by one; at the next multibulk request a fresh reader
        takes over. Returns the position to continue from, or -1 (waiting for more bytes, or
        closing)."""
        size = len(buf)
        if parse_error and pos < size and buf[pos] == 42:
            return self._protocol_error(parse_error)
        self.reader = hiredis.Reader()
        while pos < size and buf[pos] != 42:  # '*'
            eol = buf.find(b"\n", pos)
            if eol < 0:
                if size - pos > MAX_INLINE_BYTES:
                    return self._protocol_error("Protocol error: too big inline request")
                self._keep(buf, pos)
                self.resync = True
                return -1
            line = bytes(buf[pos:eol]).rstrip(b"\r")
            pos = eol + 1
            try:
                args = resp.split_inline(line)
            except ProtocolError as error:
                return self._protocol_error(str(error))
            if args:
                self._dispatch(COMMANDS.get(args[0]), args, resp.encode_request(args))
                if self.closing:
                    return -1
        self.reader.feed(bytes(buf[pos:]))
        return pos

    def _keep(self, buf: bytes | bytearray, pos: int) -> None:
        if buf is self.partial:
            del self.partial[:pos]
        else:
            self.partial = bytearray(memoryview(buf)[pos:])

    def _check_partial(self) -> None:
        """An incomplete request: refuse it early if it declares more than the size cap."""
        limit = self.app.max_request_bytes
        partial = self.partial
        if len(partial) > limit:
            self._protocol_error("Protocol error: request is larger than the sidecar's limit")
            return
        try:
            resp.check_declared_sizes(partial, limit)
        except ProtocolError as error:
            self._protocol_error(str(error))

    def _protocol_error(self, message: str) -> int:
        """Like Redis: answer the error, then close this connection (its stream is lost)."""
        self.app.stats.error("protocol")
        log.info("client %s: %s; closing its connection", self.peer, message)
        self.reply(resp.error(f"ERR {message}"))
        self.closing = True
        self.fast = None
        self.partial = bytearray()
        return -1

    # -- replies ---------------------------------------------------------------------------

    def reply(self, data: bytes) -> None:
        slot = Slot(self)
        slot.reply = data
        self.pending.append(slot)
        if not self.dirty:
            self.flusher.add_client(self)

    def queue(self, slot: Slot) -> None:
        self.pending.append(slot)
        if slot.reply is not None and not self.dirty:
            self.flusher.add_client(self)

    def mark_dirty(self) -> None:
        self.flusher.add_client(self)

    def flush(self) -> None:
        """The reference: with the C extension, ``_speedups.ClientWriter`` (set in __init__)."""
        transport = self.transport
        if transport is None:
            return
        pending = self.pending
        out = []
        while pending and pending[0].reply is not None:
            out.append(pending.popleft().reply)
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[arg-type]
        if self.closing and not pending:
            transport.close()

    # -- what handshake needs --------------------------------------------------------------

    def client_password(self) -> bytes | None:
        return self.app.client_password

    def connected_clients(self) -> int:
        return self.app.stats.client_connections

    def listen_port(self) -> int:
        return self.app.listen_port
