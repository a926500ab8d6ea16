"""The C versions of the per-request loops (``_speedups.c``), or None when they were not built.

They are optional: an install without a compiler runs the pure-Python reference code, which
gives the same results (``tests/sidecar/test_speedups.py`` compares them). Setting
``CACHEFLEET_PURE_PYTHON=1`` forces the reference code, so it stays tested end to end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cachefleet.sidecar._speedups import HotKeys as NativeHotKeys
    from cachefleet.sidecar._speedups import Ring as NativeRing

# (raw request, command name, first key or None, argument count, its shard or -1)
Request = tuple[bytes, bytes, bytes | None, int, int]
ScanRequests = Callable[["bytes | bytearray", int, "NativeRing"], tuple[list[Request], int, bool]]
SplitReplies = Callable[[bytes], tuple[list[bytes], int] | None]
EnqueueRequests = Callable[..., tuple[int, bool]]
DeliverReplies = Callable[[bytes, Any, Callable[[Any], None]], tuple[int, int, bool] | None]
MakeRing = Callable[[Sequence[int], Sequence[int]], "NativeRing"]

scan_requests: ScanRequests | None = None
split_replies: SplitReplies | None = None
# server._process_scanned's fast path in one call (see _speedups.c for the arguments)
enqueue_requests: EnqueueRequests | None = None
# BackendConnection.data_received's loop in one call
deliver_replies: DeliverReplies | None = None
make_ring: MakeRing | None = None  # (ring.tokens, ring.owners) -> key look-up in C
# hotkeys.HotKeys in C: the same constructor and methods
make_hot_keys: type[NativeHotKeys] | None = None

if os.environ.get("CACHEFLEET_PURE_PYTHON", "") in ("", "0"):
    try:
        from cachefleet.sidecar import _speedups
    except ImportError:
        pass
    else:
        scan_requests = _speedups.scan_requests
        split_replies = _speedups.split_replies
        enqueue_requests = _speedups.enqueue_requests
        deliver_replies = _speedups.deliver_replies
        make_ring = _speedups.Ring
        make_hot_keys = _speedups.HotKeys
