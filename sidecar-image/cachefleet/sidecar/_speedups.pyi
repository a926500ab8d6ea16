from collections.abc import Callable, Sequence
from typing import Any

# The C type has the reference's constructor and methods (_hotkeys.h: what the request loop calls)
from cachefleet.sidecar.hotkeys import HotKeys as HotKeys

class Latency:
    def __init__(self, bounds: Sequence[float], window_bounds: Sequence[float]) -> None: ...
    def observe(self, seconds: float, /) -> None: ...
    def take_window(self) -> list[int]: ...
    @property
    def buckets(self) -> list[int]: ...
    @property
    def window(self) -> list[int]: ...
    @property
    def total(self) -> float: ...
    @property
    def count(self) -> int: ...

class Ring:
    def __init__(self, tokens: Sequence[int], owners: Sequence[int]) -> None: ...
    def lookup(self, key: bytes, /) -> int: ...

class RouteTable:
    def __init__(
        self,
        ring: Ring,
        fast: dict[bytes, tuple[Any, int, int]],
        stops: bytes,
        other: Ring | None = None,
        mode: int = 0,
        shadow_basis_points: int = 0,
        tracker: Any = None,
        l1: dict[bytes, tuple[bytes, int, int]] | None = None,
        l1_ok: bytes = b"",
    ) -> None: ...
    def decide(self, key: bytes, klass: int = 1, /) -> tuple[int, int]: ...
    @property
    def l1_hits(self) -> int: ...

def route_requests(
    buf: bytes | bytearray,
    pos: int,
    table: RouteTable,
    targets: list[Any] | None,
    client: Any,
    pending_append: Callable[[Any], None],
    slot_type: type,
    add_backend: Callable[[Any], None],
    add_client: Callable[[Any], None],
    ready: int,
    max_bytes: int,
    /,
) -> tuple[int, int, int, int, int]: ...
def deliver_replies(
    buf: bytes,
    waiters: Any,
    add_client: Callable[[Any], None],
    push: Callable[[bytes], None] | None = None,
    /,
) -> tuple[int, int, bool] | None: ...
def write_now(transport: Any, fd: int, data: bytes | bytearray, /) -> None: ...

class FastReader:
    def __init__(self, client: Any, app: Any, /) -> None: ...
    def __call__(self, data: bytes, /) -> None: ...

class ShardReader:
    def __init__(
        self,
        conn: Any,
        add_client: Callable[[Any], None],
        observe: Callable[[float], None],
        clock: Callable[[], float] | None,
        marks: Any,
        /,
    ) -> None: ...
    def __call__(self, data: bytes, /) -> None: ...

class ClientCore: ...
class BackendCore: ...
class SlotCore: ...

class ShardWriter:
    def __init__(self, conn: Any, clock: Callable[[], float] | None, marks: Any, /) -> None: ...
    def __call__(self) -> None: ...

class Flusher:
    backends: list[Any]
    clients: list[Any]
    scheduled: bool
    def __init__(self, loop: Any) -> None: ...
    def add_backend(self, obj: Any, /) -> None: ...
    def add_client(self, obj: Any, /) -> None: ...
    def run(self) -> None: ...
