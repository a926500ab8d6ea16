"""Hot keys: the keys this sidecar sees more than ``thresholdPerSecond`` times a second.

Every request's key goes through ``observe``: it is counted in a windowed Count-Min sketch
(``sketch.py``) and, when its estimate says it is among the heaviest, kept in a table of the
top K keys. A tracked key whose rate over the window is above the threshold is hot; it stops
being hot when its rate falls below ``cool_percent`` of the threshold (the gap keeps a key that
hovers at the threshold from flapping in and out of L1).

This is the pure-Python reference of ``_hotkeys.c``: same arithmetic, all of it on integers,
so both give identical estimates, top-K tables and hot sets for the same stream and clock
(``tests/sidecar/test_hotkeys.py`` checks that). ``make_hot_keys`` picks the C type when it
was built.

The rate is measured over a window of ``window_ms`` in ``sub_windows`` slices: a key's count
over the current (partial) slice and the previous full ones, divided by the time they cover
(at least one slice, so the first requests after start do not read as a huge rate). When the
clock enters a new slice, the oldest is dropped and every tracked key's count is read again
from the sketch, which is how a key that stops arriving cools down; ``tick`` does that without
a request, ``observe`` and ``snapshot`` do it on the way.

The top-K table admits a key when there is room or when its estimate is above the smallest
count in the table; before that smallest entry is evicted its count is read again from the
sketch (a stored count only lags, it never leads), so a key is only evicted for one that is
really ahead of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Sequence
from typing import Protocol

from cachefleet.config.schema import HotKeysConfig
from cachefleet.sidecar import speedups
from cachefleet.sidecar.sketch import WindowedCountMin

Clock = Callable[[], int]  # monotonic nanoseconds
# (key, estimated count over the window, estimated requests per second, hot)
TrackedKey = tuple[bytes, int, float, bool]

MAX_CELLS = 1 << 28  # 1 GiB of counters: past any sensible epsilon and delta
HASH_LIMIT = 1 << 32


class HotKeyTracker(Protocol):
    """What both implementations offer (``HotKeys`` here, ``_speedups.HotKeys`` in C)."""

    @property
    def width(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def sub_windows(self) -> int: ...
    @property
    def window_ms(self) -> int: ...
    @property
    def top_k(self) -> int: ...
    @property
    def threshold_per_second(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def hot_generation(self) -> int: ...
    def observe(self, key: bytes, key_hash: int, /) -> bool: ...
    def observe_all(self, keys: Sequence[bytes], key_hashes: Sequence[int], /) -> int: ...
    def estimate(self, key_hash: int, /) -> int: ...
    def tick(self) -> None: ...
    def hot_keys(self) -> frozenset[bytes]: ...
    def snapshot(self) -> list[TrackedKey]: ...


def check_parameters(
    width: int,
    depth: int,
    top_k: int,
    threshold_per_second: int,
    window_ms: int,
    sub_windows: int,
    cool_percent: int,
) -> None:
    """The bounds that keep every product of the integer arithmetic within 64 bits in C."""
    bounds = {
        "width": (width, 1, MAX_CELLS),
        "depth": (depth, 1, 16),
        "top_k": (top_k, 1, 10_000),
        "threshold_per_second": (threshold_per_second, 1, 1_000_000_000),
        "window_ms": (window_ms, 1, 60_000),
        "sub_windows": (sub_windows, 1, 16),
        "cool_percent": (cool_percent, 1, 100),
    }
    for name, (value, low, high) in bounds.items():
        if not low <= value <= high:
            raise ValueError(f"{name} must be in [{low}, {high}], not {value}")
    if width * depth * sub_windows > MAX_CELLS:
        raise ValueError(f"a sketch of {width} x {depth} x {sub_windows} counters is too large")


class _Entry:
    __slots__ = ("count", "hot", "key", "key_hash")

    def __init__(self, key: bytes, key_hash: int, count: int) -> None:
        self.key = key
        self.key_hash = key_hash
        self.count = count
        self.hot = False


class HotKeys:
    """Hot-key detection in pure Python; ``_speedups.HotKeys`` is the same in C."""

    def __init__(
        self,
        width: int,
        depth: int,
        *,
        top_k: int = 64,
        threshold_per_second: int = 1000,
        window_ms: int = 1000,
        sub_windows: int = 4,
        cool_percent: int = 90,
        clock: Clock | None = None,
        admit_percent: int = 12,
    ) -> None:
        check_parameters(
            width, depth, top_k, threshold_per_second, window_ms, sub_windows, cool_percent
        )
        if not 0 <= admit_percent <= 100:
            raise ValueError(f"admit_percent must be in [0, 100], not {admit_percent}")
        self._sketch = WindowedCountMin(width, depth, sub_windows)
        self._top_k = top_k
        self._threshold = threshold_per_second
        self._cool_threshold = threshold_per_second * cool_percent // 100
        # A key not tracked yet enters the table only from this window count (a share of what
        # the threshold rate fills a window with): uniform traffic would churn it otherwise.
        self._admit_min = threshold_per_second * window_ms * admit_percent // 100_000
        self._window_ms = window_ms
        self._slice_ns = window_ms * 1_000_000 // sub_windows
        if clock is not None and not callable(clock):
            raise TypeError("clock must be callable")
        self._clock = time.monotonic_ns if clock is None else clock
        now = self._read_clock()
        self._start_ns = self._last_ns = now
        self._epoch = now // self._slice_ns
        self._covered_us = self._slice_ns // 1000
        self._entries: list[_Entry | None] = [None] * top_k
        self._slot_of: dict[bytes, int] = {}
        self._tracked = 0
        # The smallest stored count of a full table and its slot (the lowest slot on ties).
        self._floor = 0
        self._floor_slot = 0
        self._floor_stale = True
        self._hot: set[bytes] = set()
        self._hot_view: frozenset[bytes] | None = frozenset()
        self._generation = 0

    # -- the shape, for the admin endpoint and the memory bound -----------------------------

    @property
    def width(self) -> int:
        return self._sketch.width

    @property
    def depth(self) -> int:
        return self._sketch.depth

    @property
    def sub_windows(self) -> int:
        return self._sketch.sub_windows

    @property
    def window_ms(self) -> int:
        return self._window_ms

    @property
    def top_k(self) -> int:
        return self._top_k

    @property
    def threshold_per_second(self) -> int:
        return self._threshold

    @property
    def memory_bytes(self) -> int:
        return self._sketch.memory_bytes

    @property
    def hot_generation(self) -> int:
        """Goes up by one each time a key becomes hot or stops being hot."""
        return self._generation

    # -- per request -------------------------------------------------------------------------

    def observe(self, key: bytes, key_hash: int, /) -> bool:
        """Count one request for ``key``, whose whole-key murmur3 is ``key_hash``; is it hot?"""
        if not isinstance(key, bytes):
            raise TypeError("key must be bytes")
        if not 0 <= key_hash < HASH_LIMIT:
            raise ValueError("key_hash must be in [0, 2**32)")
        self._advance()
        count = self._sketch.add(key_hash)
        slot = self._slot_of.get(key)
        if slot is not None:
            entry = self._entries[slot]
            assert entry is not None
            entry.count = count
            if slot == self._floor_slot:
                self._floor_stale = True
            return self._judge(entry)
        if count < self._admit_min:
            return False
        if self._tracked < self._top_k:
            return self._admit(self._entries.index(None), key, key_hash, count)
        while True:
            if self._floor_stale:
                self._find_floor()
            if count <= self._floor:
                return False
            victim = self._entries[self._floor_slot]
            assert victim is not None
            fresh = self._sketch.estimate(victim.key_hash)
            if fresh < count:
                slot = self._floor_slot
                self._remove(slot)
                return self._admit(slot, key, key_hash, count)
            victim.count = fresh
            self._judge(victim)
            self._floor_stale = True

    def observe_all(self, keys: Sequence[bytes], key_hashes: Sequence[int], /) -> int:
        """``observe`` each key with its hash in turn; how many of them were hot."""
        if len(keys) != len(key_hashes):
            raise ValueError("need one hash per key")
        return sum(
            self.observe(key, key_hash) for key, key_hash in zip(keys, key_hashes, strict=True)
        )

    # -- reading ----------------------------------------------------------------------------

    def estimate(self, key_hash: int, /) -> int:
        """The sketch's count for ``key_hash`` over the window as of the last clock reading."""
        if not 0 <= key_hash < HASH_LIMIT:
            raise ValueError("key_hash must be in [0, 2**32)")
        return self._sketch.estimate(key_hash)

    def tick(self) -> None:
        """Read the clock and move the window on, cooling keys that stopped arriving."""
        self._advance()

    def hot_keys(self) -> frozenset[bytes]:
        """The hot keys as of the last ``observe`` or ``tick`` (the same object until a change)."""
        if self._hot_view is None:
            self._hot_view = frozenset(self._hot)
        return self._hot_view

    def snapshot(self) -> list[TrackedKey]:
        """Every tracked key, heaviest first (then by key): count, rate per second, hot."""
        self._advance()
        rows = [
            (entry.key, entry.count, entry.count * 1_000_000 / self._covered_us, entry.hot)
            for entry in self._entries
            if entry is not None
        ]
        rows.sort(key=lambda row: (-row[1], row[0]))
        return rows

    # -- the window ---------------------------------------------------------------------------

    def _read_clock(self) -> int:
        now = self._clock()
        if not isinstance(now, int):
            raise TypeError("the clock must return int nanoseconds")
        if now < 0:
            raise ValueError("the clock must not read below zero")
        return now

    def _advance(self) -> None:
        now = max(self._read_clock(), self._last_ns)
        self._last_ns = now
        epoch = now // self._slice_ns
        rotated = epoch != self._epoch
        if rotated:
            self._sketch.advance(epoch - self._epoch)
            self._epoch = epoch
        window_start = max(self._start_ns, (epoch - self._sketch.sub_windows + 1) * self._slice_ns)
        self._covered_us = max(self._slice_ns, now - window_start) // 1000
        if rotated:
            self._refresh()

    def _refresh(self) -> None:
        """Read every tracked key's count again after the oldest sub-window was dropped."""
        for slot, entry in enumerate(self._entries):
            if entry is None:
                continue
            entry.count = self._sketch.estimate(entry.key_hash)
            if entry.count == 0:
                self._remove(slot)
            else:
                self._judge(entry)
        self._floor_stale = True

    # -- the top-K table and the hot set -----------------------------------------------------

    def _judge(self, entry: _Entry) -> bool:
        """Hot above the threshold, cool below ``cool_percent`` of it, unchanged in between."""
        scaled = entry.count * 1_000_000
        if not entry.hot:
            if scaled > self._threshold * self._covered_us:
                entry.hot = True
                self._hot.add(entry.key)
                self._hot_changed()
        elif scaled < self._cool_threshold * self._covered_us:
            entry.hot = False
            self._hot.discard(entry.key)
            self._hot_changed()
        return entry.hot

    def _hot_changed(self) -> None:
        self._generation += 1
        self._hot_view = None

    def _admit(self, slot: int, key: bytes, key_hash: int, count: int) -> bool:
        entry = _Entry(key, key_hash, count)
        self._entries[slot] = entry
        self._slot_of[key] = slot
        self._tracked += 1
        self._floor_stale = True
        return self._judge(entry)

    def _remove(self, slot: int) -> None:
        entry = self._entries[slot]
        assert entry is not None
        self._entries[slot] = None
        del self._slot_of[entry.key]
        self._tracked -= 1
        if entry.hot:
            self._hot.discard(entry.key)
            self._hot_changed()

    def _find_floor(self) -> None:
        least = None
        for slot, entry in enumerate(self._entries):
            assert entry is not None
            if least is None or entry.count < least:
                least, self._floor_slot = entry.count, slot
        self._floor = least or 0
        self._floor_stale = False


def printable_key(key: bytes) -> str:
    """The key as text for people, unambiguously: printable UTF-8 as it is, backslashes
    doubled, undecodable bytes as ``\\xNN`` and other characters by their Python escape."""
    parts = []
    for char in key.decode("utf-8", "surrogateescape"):
        if char == "\\":
            parts.append("\\\\")
        elif "\udc80" <= char <= "\udcff":
            parts.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char.isprintable():
            parts.append(char)
        else:
            parts.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(parts)


def hot_keys_report(
    tracker: HotKeyTracker, in_l1: Container[bytes] | None = None
) -> dict[str, object]:
    """What ``/hotkeys`` on the admin endpoint shows; with ``in_l1`` (L1's keys), whether each
    tracked key is in L1."""
    return {
        "thresholdPerSecond": tracker.threshold_per_second,
        "topK": tracker.top_k,
        "windowMs": tracker.window_ms,
        "sketch": {
            "width": tracker.width,
            "depth": tracker.depth,
            "subWindows": tracker.sub_windows,
            "memoryBytes": tracker.memory_bytes,
        },
        "keys": [
            {"key": printable_key(key), "count": count, "ratePerSecond": rate, "hot": hot}
            | ({} if in_l1 is None else {"inL1": key in in_l1})
            for key, count, rate, hot in tracker.snapshot()
        ],
    }


def make_hot_keys(
    config: HotKeysConfig,
    clock: Clock | None = None,
    implementation: Callable[..., HotKeyTracker] | None = None,
) -> HotKeyTracker:
    """The tracker a config asks for, of ``implementation``: by default the C type when it was
    built, else the reference."""
    native = speedups.make_hot_keys
    factory = implementation or (HotKeys if native is None else native)
    return factory(
        config.width,
        config.depth,
        top_k=config.top_k,
        threshold_per_second=config.threshold_per_second,
        window_ms=config.WINDOW_MS,
        sub_windows=config.SUB_WINDOWS,
        clock=clock,
    )
