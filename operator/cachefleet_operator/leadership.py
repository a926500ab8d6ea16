"""The leader-election loop: a thread that reads and writes the Lease, ``leader.decide`` decides.

A thread rather than a task on kopf's event loop, so a busy loop never delays a renewal. The
loop tells the rest of the operator two things: ``is_leader()`` (checked before every write,
the fence) and, through ``on_change``, the moments leadership starts or ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cachefleet_operator.kube import Kube, KubeError
from cachefleet_operator.leader import ElectionTiming, LeaseState, decide, released

logger = logging.getLogger("cachefleet.operator.leader")


@dataclass
class Leadership:
    kube: Kube
    identity: str
    namespace: str
    name: str
    timing: ElectionTiming = field(default_factory=ElectionTiming)
    on_change: Callable[[bool], None] = lambda leading: None
    _valid_until: float = 0.0
    _leading: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _last: LeaseState | None = None

    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop, and give the Lease up if held, so another replica takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timing.retry_seconds + 5)
        if self.is_leader() and self._last is not None:
            try:
                lease = released(self._last, self.name, self.namespace, datetime.now(UTC))
                self.kube.write_lease(self.namespace, lease)
                logger.info("%s: released the lease", self.identity)
            except KubeError as error:
                logger.warning("%s: could not release the lease: %s", self.identity, error)
        self._valid_until = 0.0
        self._set_leading(False)

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = self.step()
            self._stop.wait(delay)

    def step(self) -> float:
        """One look at the Lease (and a write if ``decide`` says so); seconds to the next."""
        started = time.monotonic()
        try:
            raw = self.kube.get_lease(self.namespace, self.name)
            current = LeaseState.from_lease(raw) if raw is not None else None
            decision = decide(
                current,
                self.identity,
                datetime.now(UTC),
                self.timing,
                name=self.name,
                namespace=self.namespace,
            )
            if decision.lease is not None:
                written = self.kube.write_lease(self.namespace, decision.lease)
                self._last = LeaseState.from_lease(written)
                self._valid_until = started + self.timing.renew_deadline
            else:
                self._last = current
        except KubeError as error:
            # 409: someone else wrote the Lease first; anything else: the API is unreachable.
            # Either way keep leading only until the renew deadline runs out.
            logger.info("%s: lease: %s", self.identity, error)
            self._set_leading(self.is_leader())
            return self.timing.retry_seconds
        self._set_leading(self.is_leader())
        return decision.next_look

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        holder = self._last.holder if self._last is not None else ""
        if leading:
            logger.info(
                "%s: became the leader (lease %s/%s)", self.identity, self.namespace, self.name
            )
        else:
            logger.info("%s: not the leader (holder %r)", self.identity, holder)
        self.on_change(leading)
