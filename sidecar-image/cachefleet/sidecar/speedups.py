"""The C versions of the per-request loops (``_speedups.c``), or None when they were not built.

They are optional: an install without a compiler runs the pure-Python reference code, which
gives the same results (``tests/sidecar/test_speedups.py`` compares them). Setting
``CACHEFLEET_PURE_PYTHON=1`` forces the reference code, so it stays tested end to end.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cachefleet.sidecar._speedups import HotKeys as NativeHotKeys
    from cachefleet.sidecar._speedups import Latency as NativeLatency
    from cachefleet.sidecar._speedups import Ring as NativeRing
    from cachefleet.sidecar._speedups import RouteTable as NativeRouteTable

# (pos, stop, end, owner, reason); see _speedups.c
RouteRequests = Callable[..., tuple[int, int, int, int, int]]
WriteNow = Callable[[object, int, bytes | bytearray], None]
MakeRing = Callable[[Sequence[int], Sequence[int]], "NativeRing"]
MakeRouteTable = Callable[..., "NativeRouteTable"]

# The client loop's steps for every fast request, with the route table's decision, in one call
route_requests: RouteRequests | None = None
# ClientConnection.data_received's common case in C: FastReader(client)
make_fast_reader: Callable[[object], Callable[[bytes], None]] | None = None
# BackendConnection.data_received in C: ShardReader(conn, add_client, observe, clock, marks),
# clock None for time.monotonic's clock read in C
make_shard_reader: Callable[..., Callable[[bytes], None]] | None = None
# BackendConnection.flush in C: ShardWriter(conn, clock, marks)
make_shard_writer: Callable[..., Callable[[], None]] | None = None
# ClientConnection.flush in C: ClientWriter(client)
make_client_writer: Callable[[object], Callable[[], None]] | None = None
# flusher.Flusher in C: Flusher(loop)
make_native_flusher: Callable[[object], object] | None = None
# transport.write with the system call made in C while the transport buffers nothing
write_now: WriteNow | None = None
make_ring: MakeRing | None = None  # (ring.tokens, ring.owners) -> key look-up in C
# (ring, fast commands, stops[, other ring, mode, shadow basis points]) -> C route table
make_route_table: MakeRouteTable | None = None
# hotkeys.HotKeys in C: the same constructor and methods
make_hot_keys: type[NativeHotKeys] | None = None
# stats.Latency in C: Latency(bounds, window_bounds); ShardReader calls its observe in C
make_latency: type[NativeLatency] | None = None


class PlainCore:
    """Without the C extension, the base of the connection classes: their fields stay in their
    ``__dict__``. With it, ``_speedups.ClientCore`` and ``BackendCore`` hold the fields the C
    loops use in C (ordinary attributes to Python)."""


class PlainSlotCore:
    """Without the C extension, the base of ``slots.Slot``; with it, ``_speedups.SlotCore``."""

    __slots__ = ("client", "reply")


def socket_fd(transport: asyncio.BaseTransport) -> int:
    """The socket under a transport, for write_now; -1 when its bytes must go through the
    transport (TLS, or no socket)."""
    sock = transport.get_extra_info("socket")
    if sock is None or transport.get_extra_info("sslcontext") is not None:
        return -1
    return int(sock.fileno())


native_cores: tuple[type, type, type] | None = None

if os.environ.get("CACHEFLEET_PURE_PYTHON", "") in ("", "0"):
    try:
        from cachefleet.sidecar import _speedups
    except ImportError:
        pass
    else:
        route_requests = _speedups.route_requests
        write_now = _speedups.write_now
        make_fast_reader = _speedups.FastReader
        make_shard_reader = _speedups.ShardReader
        make_shard_writer = _speedups.ShardWriter
        make_client_writer = _speedups.ClientWriter
        make_native_flusher = _speedups.Flusher
        native_cores = (_speedups.ClientCore, _speedups.BackendCore, _speedups.SlotCore)
        make_ring = _speedups.Ring
        make_route_table = _speedups.RouteTable
        make_hot_keys = _speedups.HotKeys
        make_latency = _speedups.Latency

if TYPE_CHECKING:  # the classes are checked against the plain bases: the same attributes
    ClientCore = PlainCore
    BackendCore = PlainCore
    SlotCore = PlainSlotCore
elif native_cores is not None:
    ClientCore, BackendCore, SlotCore = native_cores
else:
    ClientCore, BackendCore, SlotCore = PlainCore, PlainCore, PlainSlotCore
