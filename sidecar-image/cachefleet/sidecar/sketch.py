"""A Count-Min sketch with conservative update over a sliding window of sub-windows.

The reference for the sketch half of ``_hotkeys.c``: the same layout, the same row indexes and
the same integer arithmetic, so both give identical estimates for the same stream.

Counters are 32-bit and saturate. They are laid out ``[row][column][sub-window]``: the
sub-window counters of one cell sit side by side, so reading a key's count over the whole
window touches one cache line per row, not one per row and sub-window.

Row indexes come from the key's MurmurHash3 x86_32 (seed 0) of the whole key, the hash the ring
computes for keys without a hash tag: row r hashes it again with murmur3's finaliser,
``g_r = fmix32(h ^ (r * 0x9E3779B9 mod 2**32))``, and takes column ``(g_r * width) >> 32``
(Lemire's multiply-shift range reduction: no division, any width). Kirsch-Mitzenmacher double
hashing (``g_r = h1 + r * h2`` with h2 mixed from h1) was measured first and rejected: two keys
whose ``h1`` and ``h2`` are both close land in the same cell in every row, so a pair collides
everywhere with probability about 1/width² instead of 1/width^depth; on the 10M-request Zipf
stream of bench/hotkeys.py a key seen 6 times read as 12,748 because it shared all four cells
with a top-64 key. With a finaliser per row, rows collide (nearly) independently. Two keys whose
32-bit hashes are equal still share every counter (with a million keys, about a hundred pairs,
each overestimated by the other's count); that is the price of reusing the ring's hash.
"""

from __future__ import annotations

from array import array

MASK32 = 0xFFFFFFFF
COUNTER_MAX = MASK32  # counters saturate instead of wrapping
ROW_SALT_STEP = 0x9E3779B9  # 2**32 / golden ratio: row r's salt is r times this, mod 2**32


def fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser: a bijection that spreads every input bit."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    h ^= h >> 16
    return h


class WindowedCountMin:
    """``sub_windows`` Count-Min sketches, one per sub-window, the current one written."""

    def __init__(self, width: int, depth: int, sub_windows: int) -> None:
        self.width = width
        self.depth = depth
        self.sub_windows = sub_windows
        self.current = 0
        self._row_salts = [(row * ROW_SALT_STEP) & MASK32 for row in range(depth)]
        # Repeating an array allocates it exactly; building one from bytes over-allocates.
        self._cells = array("I", [0]) * (width * depth * sub_windows)

    @property
    def memory_bytes(self) -> int:
        return self._cells.itemsize * len(self._cells)

    def _cell_starts(self, key_hash: int) -> list[int]:
        """Where the key's cell starts in each row."""
        width, slots = self.width, self.sub_windows
        return [
            (row * width + ((fmix32(key_hash ^ salt) * width) >> 32)) * slots
            for row, salt in enumerate(self._row_salts)
        ]

    def _window_count(self, starts: list[int]) -> int:
        # Each sub-window's minimum bounds the key's count in it from above, and their sum is
        # at most the minimum of the rows' sums: the tighter of the two estimates.
        slots = self.sub_windows
        rows = [self._cells[start : start + slots] for start in starts]
        return sum(map(min, zip(*rows, strict=True)))

    def add(self, key_hash: int) -> int:
        """Count one occurrence (conservative update) and return the key's window estimate."""
        cells = self._cells
        starts = self._cell_starts(key_hash)
        slot = self.current
        counts = [cells[start + slot] for start in starts]
        least = min(counts)
        if least < COUNTER_MAX:
            # Conservative update: only the counters at the minimum go up, so a counter grows
            # no more than the heaviest key it holds requires.
            for start, count in zip(starts, counts, strict=True):
                if count == least:
                    cells[start + slot] = least + 1
        return self._window_count(starts)

    def estimate(self, key_hash: int) -> int:
        """The key's count over the window, never below the true count."""
        return self._window_count(self._cell_starts(key_hash))

    def advance(self, steps: int) -> None:
        """Move ``steps`` sub-windows on: the ones that become current start empty."""
        slots = self.sub_windows
        cleared = min(steps, slots)
        if cleared:
            # made here, a few times a second, rather than kept: the bound is on memory held
            empty = array("I", [0]) * (self.width * self.depth)
            for step in range(1, cleared + 1):
                self._cells[(self.current + step) % slots :: slots] = empty
        self.current = (self.current + steps) % slots
