"""When the operator reconciles: the scheduler in handlers.py, with the reconcile itself faked.

No cluster needed: ``reconcile_once`` is replaced by a recorder, and watch events are handed to
``Scheduler.notice`` as kopf would.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cachefleet_operator import handlers
from cachefleet_operator.handlers import OperatorRuntime, ReconcileResult, Scheduler

RESYNC = 5.0


class FakeReconciles:
    """Records every reconcile; each takes ``duration`` seconds and asks for ``requeue_after``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.running: Counter[str] = Counter()
        self.overlaps = 0
        self.duration = 0.0
        self.requeue_after: float | None = None
        self.generation = 1
        self.gone: set[str] = set()
        self._lock = threading.Lock()

    def __call__(
        self, runtime: OperatorRuntime, namespace: str, name: str
    ) -> ReconcileResult | None:
        with self._lock:
            self.running[name] += 1
            if self.running[name] > 1:
                self.overlaps += 1
            self.calls.append((name, time.monotonic()))
        time.sleep(self.duration)
        with self._lock:
            self.running[name] -= 1
        if name in self.gone:
            return None
        return ReconcileResult(self.requeue_after, Counter(), 0, self.duration, self.generation)

    def count(self, name: str) -> int:
        return sum(1 for called, _ in self.calls if called == name)


def body(name: str, generation: int = 1, uid: str = "uid-1") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "generation": generation, "uid": uid}}


@pytest.fixture
async def running(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[Scheduler, FakeReconciles]]:
    fake = FakeReconciles()
    monkeypatch.setattr(handlers, "reconcile_once", fake)
    runtime = OperatorRuntime(kube=None, signal=None, resync_seconds=RESYNC)  # type: ignore[arg-type]
    scheduler = Scheduler(runtime)
    task = asyncio.create_task(scheduler.run())
    yield scheduler, fake
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_new_object_is_reconciled_at_once_then_at_the_resync(
    running: tuple[Scheduler, FakeReconciles],
) -> None:
    scheduler, fake = running
    scheduler.notice(None, body("a"))
    await until(lambda: fake.count("a") == 1)
    # Our own status write comes back as MODIFIED with the same generation: no reconcile.
    scheduler.notice("MODIFIED", body("a"))
    await asyncio.sleep(0.3)
    assert fake.count("a") == 1


async def test_a_spec_change_reconciles_now_and_requeue_after_is_honoured(
    running: tuple[Scheduler, FakeReconciles],
) -> None:
    scheduler, fake = running
    fake.requeue_after = 0.2
    scheduler.notice("ADDED", body("a"))
    await until(lambda: fake.count("a") >= 3, timeout=2.0)  # well before the 5 s resync
    times = [t for name, t in fake.calls if name == "a"]
    assert all(later - earlier >= 0.15 for earlier, later in itertools.pairwise(times))
    fake.requeue_after = None
    await asyncio.sleep(0.4)
    seen = fake.count("a")
    fake.generation = 2
    scheduler.notice("MODIFIED", body("a", generation=2))
    await until(lambda: fake.count("a") == seen + 1, timeout=0.5)


async def test_one_reconcile_at_a_time_per_object_and_a_change_meanwhile_is_not_lost(
    running: tuple[Scheduler, FakeReconciles],
) -> None:
    scheduler, fake = running
    fake.duration = 0.3
    scheduler.notice("ADDED", body("a"))
    scheduler.notice("ADDED", body("b"))
    await until(lambda: fake.running["a"] == 1 and fake.running["b"] == 1)
    # Changes while "a" runs: one more reconcile right after, never two at once.
    fake.generation = 2
    for generation in (2, 3, 4):
        scheduler.notice("MODIFIED", body("a", generation=generation))
    await until(lambda: fake.count("a") == 2, timeout=2.0)
    await asyncio.sleep(0.5)
    assert fake.overlaps == 0
    assert fake.count("b") == 1  # others go on in parallel and are not re-run


async def test_deleted_objects_are_dropped_and_a_namesake_is_new(
    running: tuple[Scheduler, FakeReconciles],
) -> None:
    scheduler, fake = running
    fake.requeue_after = 0.1
    scheduler.notice("ADDED", body("a"))
    await until(lambda: fake.count("a") >= 1)
    scheduler.notice("DELETED", body("a"))
    await asyncio.sleep(0.2)
    stopped_at = fake.count("a")
    await asyncio.sleep(0.4)
    assert fake.count("a") == stopped_at
    assert ("ns", "a") not in scheduler.tracked
    scheduler.notice("ADDED", body("a", uid="uid-2"))  # same name and generation, new object
    await until(lambda: fake.count("a") == stopped_at + 1)
    # An object found gone by its reconcile is no longer tracked either.
    fake.gone.add("a")
    await until(lambda: ("ns", "a") not in scheduler.tracked)


async def test_a_follower_tracks_but_reconciles_only_once_it_leads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeReconciles()
    monkeypatch.setattr(handlers, "reconcile_once", fake)
    runtime = OperatorRuntime(kube=None, signal=None, resync_seconds=RESYNC)  # type: ignore[arg-type]
    leading = False
    scheduler = Scheduler(runtime, may_act=lambda: leading)
    task = asyncio.create_task(scheduler.run())
    try:
        scheduler.notice("ADDED", body("a"))
        scheduler.notice("ADDED", body("b"))
        await asyncio.sleep(0.3)
        assert fake.calls == []  # a follower only keeps its watch warm
        assert set(scheduler.tracked) == {("ns", "a"), ("ns", "b")}
        leading = True
        scheduler.leadership_changed(True)
        await until(lambda: fake.count("a") == 1 and fake.count("b") == 1)
        leading = False
        scheduler.leadership_changed(False)
        calls = len(fake.calls)
        scheduler.notice("MODIFIED", body("a", generation=2))
        await asyncio.sleep(0.3)
        assert len(fake.calls) == calls
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
