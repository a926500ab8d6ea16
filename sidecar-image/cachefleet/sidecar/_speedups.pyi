from collections.abc import Callable, Sequence
from typing import Any

# The C type has the reference's constructor and methods (_hotkeys.h: what the request loop calls)
from cachefleet.sidecar.hotkeys import HotKeys as HotKeys

class Ring:
    def __init__(self, tokens: Sequence[int], owners: Sequence[int]) -> None: ...
    def lookup(self, key: bytes, /) -> int: ...

def scan_requests(
    buf: bytes | bytearray, pos: int, ring: Ring, /
) -> tuple[list[tuple[bytes, bytes, bytes | None, int, int]], int, bool]: ...
def split_replies(buf: bytes, /) -> tuple[list[bytes], int] | None: ...
def enqueue_requests(
    buf: bytes | bytearray,
    pos: int,
    ring: Ring,
    fast: dict[bytes, tuple[Any, int]],
    targets: list[Any],
    client: Any,
    pending_append: Callable[[Any], None],
    slot_type: type,
    add_backend: Callable[[Any], None],
    ready: int,
    max_bytes: int,
    /,
) -> tuple[int, bool]: ...
def deliver_replies(
    buf: bytes, waiters: Any, add_client: Callable[[Any], None], /
) -> tuple[int, int, bool] | None: ...
