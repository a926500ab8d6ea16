"""Ctrl-C and SIGTERM for ``cachefleet up`` and ``cachefleet demo``: the signal is noted, and
the command stops at its next safe point.

The handler only records the signal; the loops call ``StopSignal.check()`` between steps.
Raising from the handler (what Python's own SIGINT handler does) lands the exception at
whatever bytecode the main thread is running. Inside ``subprocess.Popen.poll()`` that can be
between taking the process's waitpid lock and the ``try`` that releases it; the lock then stays
taken and every later ``wait()`` on that process times out, even after SIGKILL. ``cachefleet
up`` polls its sidecar on every reconcile, and CI once saw its stop fail this way.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(Exception):
    """Raised by ``StopSignal.check()`` at a safe point: unwind, stopping everything started."""


class StopSignal:
    """Whether Ctrl-C or SIGTERM has arrived."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None

    @property
    def requested(self) -> bool:
        return self.received is not None

    def check(self) -> None:
        if self.received is not None:
            raise Stop(self.received.name)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopSignal]:
    """Note SIGINT and SIGTERM while inside; the previous handlers are back afterwards."""
    stop = StopSignal()
    previous = {s: signal.signal(s, stop._note) for s in SIGNALS}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
