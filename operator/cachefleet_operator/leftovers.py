"""Keys a shard still holds from an earlier ring, deleted before a capacity change warms it.

A shard can get back keys it owned under an earlier ring (4 → 5 → 4, or a reweighting undone).
Its copies of them are from then: while the ring in between gave the keys to another shard,
every write of them went there, so nothing updated or deleted them here. The warm-up corrects a
warming owner's copy only when a request touches the key during the shadow phase; a key nobody
touched would be served with its old value after the cut-over (and by the grace fallback).

So while a change is Provisioning, before anything shadows or cuts over, the operator scans every
shard that gains keys and deletes each key that the next ring gives to it and the active ring
gives to another shard. Provisioning is the phase where this is complete:
- the sidecars' config carries the active ring alone, so no sidecar writes a key to a shard that
  is not its active owner: no leftover can appear while the scan runs or after it;
- SCAN returns every key that is there for the whole scan, so none is missed;
- from Shadowing on, the only values a warming owner gets for keys it does not own yet are the
  warm-up's own (mirrors, guarded copies, deletes), which are current. The sweep must not run
  then: it would delete those.

A shard that the change adds needs no scan when persistence is off (it starts empty); with
persistence on it may come back on a volume kept from an earlier life of that name, so it is
scanned too. The planes' own keys (``cachefleet:…``) are never deleted here.

The scan is resumable: each reconcile turn spends at most ``budget_seconds`` on it and keeps
each shard's SCAN cursor in memory, so one operator thread is never held for long; an operator
that restarts starts the scan again (deleting is idempotent).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cachefleet.config.keys import OWN_KEY_PREFIX
from cachefleet.ring import Ring, movement

from cachefleet_operator.plan import LeftoverSweep
from cachefleet_operator.shard_client import shard_client

logger = logging.getLogger("cachefleet.operator")

SCAN_COUNT = 1000


def receiving_shards(active: Ring, following: Ring) -> list[str]:
    """Shards that own some position on ``following`` that another shard owns on ``active``."""
    return sorted({target for _, target in movement(active, following).by_pair})


def leftover_test(shard: str, active: Ring, following: Ring) -> Callable[[bytes], bool]:
    """Whether a key found on ``shard`` is a leftover: ``following`` gives it to ``shard``,
    ``active`` to another shard, and it is not one of the planes' own keys."""
    active_index = active.lookup_function()
    next_index = following.lookup_function()
    names = active.shard_names
    own_active = names.index(shard) if shard in names else -1
    own_next = following.shard_names.index(shard)
    own_prefix = OWN_KEY_PREFIX.encode()

    def is_leftover(key: bytes) -> bool:
        return (
            next_index(key) == own_next
            and active_index(key) != own_active
            and not key.startswith(own_prefix)
        )

    return is_leftover


@dataclass(frozen=True)
class SweepTarget:
    """What to sweep for one change of one CacheCluster."""

    namespace: str
    cluster: str
    change_id: str
    # (shard name, HOST:PORT) of every shard to scan.
    shards: tuple[tuple[str, str], ...]
    active: Ring
    following: Ring
    password: str | None = None


@dataclass
class _ShardScan:
    cursor: int = 0
    finished: bool = False


@dataclass
class _ChangeScan:
    shards: dict[str, _ShardScan] = field(default_factory=dict)
    scanned: int = 0
    deleted: int = 0
    waiting_on: str | None = None


class RedisLeftoverSweeper:
    """Scans the target's shards with SCAN and deletes leftovers with UNLINK."""

    def __init__(
        self,
        budget_seconds: float = 2.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget_seconds = budget_seconds
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._changes: dict[tuple[str, str, str], _ChangeScan] = {}

    def _client(self, address: str, password: str | None) -> Any:
        return shard_client(address, password, self.timeout)

    def sweep(self, target: SweepTarget, now: datetime) -> LeftoverSweep:
        """Go on with the sweep for at most the budget; say how far it has come."""
        import redis

        memory = (target.namespace, target.cluster, target.change_id)
        with self._lock:
            # One change at a time per cluster: an older change's cursors mean nothing now.
            for other in [m for m in self._changes if m[:2] == memory[:2] and m != memory]:
                del self._changes[other]
            progress = self._changes.setdefault(memory, _ChangeScan())
            deadline = self.clock() + self.budget_seconds
            waiting_on: str | None = None
            for shard, address in target.shards:
                scan = progress.shards.setdefault(shard, _ShardScan())
                if scan.finished:
                    continue
                if self.clock() >= deadline:
                    break
                try:
                    self._scan(target, shard, address, scan, progress, deadline)
                except redis.RedisError as error:
                    waiting_on = f"{shard} ({address}): {error}"
                    if waiting_on != progress.waiting_on:  # once per obstacle, not per turn
                        logger.warning(
                            "%s/%s: cannot sweep leftovers on %s",
                            target.namespace,
                            target.cluster,
                            waiting_on,
                        )
            progress.waiting_on = waiting_on
            done = all(
                progress.shards.get(shard, _ShardScan()).finished for shard, _ in target.shards
            )
            if done and progress.deleted:
                logger.info(
                    "%s/%s: change %s: deleted %d leftover keys of %d scanned",
                    target.namespace,
                    target.cluster,
                    target.change_id,
                    progress.deleted,
                    progress.scanned,
                )
            return LeftoverSweep(
                done=done,
                scanned=progress.scanned,
                deleted=progress.deleted,
                observed_at=now,
                waiting_on=waiting_on,
            )

    def _scan(
        self,
        target: SweepTarget,
        shard: str,
        address: str,
        scan: _ShardScan,
        progress: _ChangeScan,
        deadline: float,
    ) -> None:
        is_leftover = leftover_test(shard, target.active, target.following)
        client = self._client(address, target.password)
        try:
            while self.clock() < deadline:
                cursor, keys = client.scan(scan.cursor, count=SCAN_COUNT)
                leftovers = [key for key in keys if is_leftover(key)]
                if leftovers:
                    progress.deleted += int(client.unlink(*leftovers))
                progress.scanned += len(keys)
                scan.cursor = int(cursor)
                if scan.cursor == 0:
                    scan.finished = True
                    return
        finally:
            client.close()
