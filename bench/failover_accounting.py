"""The pure arithmetic of ``bench/failover.py``: what counts as a stale read, how long the error
window was, and how much load a shard carried in a stretch of time.

No sockets and no clock here: times come in as plain floats (``time.monotonic`` seconds), so
``tests/bench/test_failover_accounting.py`` checks every rule on hand-made data.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

# -- stale reads ----------------------------------------------------------------------------


class ReadVerdict(StrEnum):
    FRESH = "fresh"  # the last acknowledged value
    MISS = "miss"  # nothing there: a cache may always miss
    PENDING = "pending"  # a write that failed after the last ack may still have landed
    STALE = "stale"  # a value of this key older than the last acknowledged one
    FOREIGN = "foreign"  # a value never written to this key at all


BAD_READS = (ReadVerdict.STALE, ReadVerdict.FOREIGN)


class KeyLedger:
    """Every value written to each key, which one was acknowledged last, and which failed since.

    Each key has one writer that waits for each reply before the next request on that key, so
    "the last acknowledged value" is well defined. A write that failed (an error, a timeout, a
    dropped connection) may or may not have been applied: its value is acceptable until a later
    write is acknowledged, after which reading it is as stale as reading any older value.
    """

    def __init__(self) -> None:
        self._sequence = 0
        self._acked: dict[bytes, bytes] = {}
        self._unsure: dict[bytes, list[bytes]] = {}
        self._written: dict[bytes, set[bytes]] = {}

    def next_value(self, key: bytes) -> bytes:
        """A value never written before, to be sent in the next write of ``key``."""
        self._sequence += 1
        value = b"v%d" % self._sequence
        self._written.setdefault(key, set()).add(value)
        return value

    def acked(self, key: bytes, value: bytes) -> None:
        self._acked[key] = value
        self._unsure.pop(key, None)

    def failed(self, key: bytes, value: bytes) -> None:
        self._unsure.setdefault(key, []).append(value)

    def last_acked(self, key: bytes) -> bytes | None:
        return self._acked.get(key)

    def judge(self, key: bytes, value: bytes | None) -> ReadVerdict:
        if value is None:
            return ReadVerdict.MISS
        if value == self._acked.get(key):
            return ReadVerdict.FRESH
        if value in self._unsure.get(key, ()):
            return ReadVerdict.PENDING
        if value in self._written.get(key, ()):
            return ReadVerdict.STALE
        return ReadVerdict.FOREIGN


# -- failures -------------------------------------------------------------------------------

_ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}:\d+\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
KIND_LENGTH = 100


def failure_kind(message: str) -> str:
    """An error message with its addresses and numbers blanked, so equal causes count together:
    ``ERR shard 127.0.0.1:4242 unavailable: no reply within 500 ms`` becomes
    ``ERR shard ADDR unavailable: no reply within N ms``."""
    kind = _NUMBER.sub("N", _ADDRESS.sub("ADDR", message.strip()))
    return kind[:KIND_LENGTH]


def error_window(fault: float, failures: Sequence[float], until: float) -> float:
    """Seconds from ``fault`` to the last failure seen in [fault, until); 0 with none."""
    inside = [t for t in failures if fault <= t < until]
    return max(inside) - fault if inside else 0.0


def count_between(sorted_times: Sequence[float], start: float, end: float) -> int:
    """How many of ``sorted_times`` fall in [start, end)."""
    return bisect_left(sorted_times, end) - bisect_left(sorted_times, start)


def per_second(sorted_times: Sequence[float], start: float, end: float) -> float:
    if end <= start:
        return 0.0
    return count_between(sorted_times, start, end) / (end - start)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# -- load on a shard ------------------------------------------------------------------------


@dataclass(frozen=True)
class CounterSample:
    """A shard's ``total_commands_processed`` as INFO reported it, and when."""

    at: float
    total: int


@dataclass(frozen=True)
class Bin:
    """The commands a shard processed between two consecutive samples."""

    start: float
    end: float
    commands: int


def bins(samples: Sequence[CounterSample], own_per_sample: int = 1) -> list[Bin]:
    """Consecutive samples as bins, less the sampler's own commands (each INFO is counted in
    the next sample's total). A total that went down means the server restarted: the bin then
    holds what the new server counted since it started."""
    out = []
    for before, after in itertools.pairwise(samples):
        if after.total >= before.total:
            commands = after.total - before.total - own_per_sample
        else:
            commands = after.total
        out.append(Bin(before.at, after.at, max(0, commands)))
    return out


def bins_within(all_bins: Sequence[Bin], start: float, end: float) -> list[Bin]:
    return [b for b in all_bins if b.start >= start and b.end <= end]


@dataclass(frozen=True)
class ShardLoad:
    """A shard's commands over a stretch of time, against the requests the bench sent then."""

    seconds: float
    commands: int
    requests: int  # the benchmark's requests sent in the same bins

    @property
    def per_second(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0

    @property
    def share(self) -> float:
        """Shard commands per request offered: what the shard carries of the load, whatever
        rate the machine let the benchmark reach."""
        return self.commands / self.requests if self.requests else 0.0


def load_of(chosen: Sequence[Bin], sent: Sequence[float]) -> ShardLoad:
    return ShardLoad(
        seconds=sum(b.end - b.start for b in chosen),
        commands=sum(b.commands for b in chosen),
        requests=sum(count_between(sent, b.start, b.end) for b in chosen),
    )


def halves(chosen: Sequence[Bin]) -> tuple[list[Bin], list[Bin]]:
    """The bins of a stretch split in two at its middle in time."""
    if not chosen:
        return [], []
    middle = (chosen[0].start + chosen[-1].end) / 2
    return [b for b in chosen if b.end <= middle], [b for b in chosen if b.end > middle]


def relative_change(before: float, after: float) -> float | None:
    return None if before == 0 else after / before - 1


NOISE_FLOOR = 0.05
NOISE_SIGMAS = 3.0


def noise_bound(half_changes: Sequence[float]) -> float:
    """How far a healthy shard's load share may move between two stretches and still be noise:
    ``NOISE_SIGMAS`` times the root mean square of the change between the two halves of the
    healthy stretch before the fault (measured on every shard, in the same run), but never
    below ``NOISE_FLOOR``.

    Each half spans whole key cycles (every key is visited once per cycle), so a half and the
    stretch compared with it carry the same keys; the half-to-half change then holds exactly
    what is left: the machine's hiccups, sampling edges and the proxies' own traffic. The floor
    keeps a run that happened to be very steady from declaring a 2% wobble a cascade. It sits
    far below what rehashing does: a failed shard's keys spread over the 3 others of 4 add
    about a third to each."""
    if not half_changes:
        return NOISE_FLOOR
    rms = math.sqrt(statistics.fmean(c * c for c in half_changes))
    return max(NOISE_FLOOR, NOISE_SIGMAS * rms)


def back_in_service(
    shard_bins: Sequence[Bin], since: float, commands_per_second: float
) -> float | None:
    """End of the first bin starting at or after ``since`` in which the shard processed at
    least ``commands_per_second``: when the proxy is sending it its keys again."""
    for b in shard_bins:
        if (
            b.start >= since
            and b.end > b.start
            and b.commands >= commands_per_second * (b.end - b.start)
        ):
            return b.end
    return None
