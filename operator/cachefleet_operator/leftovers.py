"""Keys a shard still holds from an earlier ring, deleted before a capacity change warms it.

A shard can get back keys it owned under an earlier ring (4 → 5 → 4, or a reweighting undone).
Its copies of them are from then: while the ring in between gave the keys to another shard,
every write of them went there, so nothing updated or deleted them here. The warm-up corrects a
warming owner's copy only when a request touches the key during the shadow phase; a key nobody
touched would be served with its old value after the cut-over (and by the grace fallback).

So while a change is Provisioning, before anything shadows or cuts over, the operator scans every
shard that gains keys and deletes each key that the next ring gives to it and the active ring
gives to another shard. Provisioning is the phase where this is complete:
- the sweep begins once every sidecar heard from runs the Provisioning config, the active ring
  alone (warmup.py waits for that, 120 s at most, then goes on with a Warning): from then on no
  sidecar writes a key to a shard that is not its active owner, so no leftover can appear while
  the scan runs or after it;
- SCAN returns every key that is there for the whole scan, so none is missed, as long as the
  server is the same process (the scan starts again when its run_id changes); with persistence
  on, a shard counts as swept only once a snapshot taken after its sweep is written, so a
  restart cannot reload what was deleted;
- from Shadowing on, the only values a warming owner gets for keys it does not own yet are the
  warm-up's own (mirrors, guarded copies, deletes), which are current. The sweep does not run
  then: it would cost those hits.

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
        # The active ring first: most keys on a shard are its own, so one look-up settles them.
        return (
            active_index(key) != own_active
            and next_index(key) == own_next
            and not key.startswith(own_prefix)
        )

    return is_leftover


@dataclass(frozen=True)
class SweepTarget:
    """What to sweep for one change of one CacheCluster."""

    namespace: str
    cluster: str
    uid: str  # a cluster recreated under the same name is another sweep
    change_id: str
    # When the sweep began (every sidecar running the Provisioning config): a later start is
    # another sweep, from the first key.
    started_at: str
    # (shard name, HOST:PORT) of every shard to scan.
    shards: tuple[tuple[str, str], ...]
    active: Ring
    following: Ring
    password: str | None = None
    # spec.persistence.enabled: each shard's snapshot must be rewritten after its sweep, or a
    # restart before the next scheduled snapshot would reload the leftovers.
    persistent: bool = False


@dataclass
class _ShardScan:
    cursor: int = 0
    # The server process the cursor belongs to: Redis seeds its key hashing per process, so a
    # cursor means nothing to a restarted server (and a persistent one reloads its snapshot,
    # leftovers included). A scan that sees another run_id starts again from the first key.
    run_id: str = ""
    finished: bool = False
    # Persistent shards only: the server's snapshot count when the sweep asked for one (None:
    # not asked yet), and whether a snapshot taken after the sweep is written.
    saves_before: int | None = None
    saved: bool = False

    def complete(self, persistent: bool) -> bool:
        return self.finished and (self.saved or not persistent)


@dataclass
class _ChangeScan:
    shards: dict[str, _ShardScan] = field(default_factory=dict)
    scanned: int = 0
    deleted: int = 0
    waiting_on: str | None = None


class RedisLeftoverSweeper:
    """Scans the target's shards with SCAN and deletes leftovers with UNLINK.

    Reconciles of one CacheCluster never overlap (the scheduler runs one at a time per object),
    so a sweep's state needs no lock of its own; the lock guards only the table of sweeps, which
    reconciles of different clusters share.
    """

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
        self._sweeps: dict[tuple[str, ...], _ChangeScan] = {}

    def _client(self, address: str, password: str | None) -> Any:
        return shard_client(address, password, self.timeout)

    def _progress(self, target: SweepTarget) -> _ChangeScan:
        cluster = (target.namespace, target.cluster)
        memory = (*cluster, target.uid, target.change_id, target.started_at)
        with self._lock:
            # One sweep at a time per cluster: an older one's cursors mean nothing now.
            for other in [m for m in self._sweeps if m[:2] == cluster and m != memory]:
                del self._sweeps[other]
            return self._sweeps.setdefault(memory, _ChangeScan())

    def sweep(self, target: SweepTarget, now: datetime) -> LeftoverSweep:
        """Go on with the sweep for at most the budget; say how far it has come."""
        import redis

        progress = self._progress(target)
        deadline = self.clock() + self.budget_seconds
        waiting_on: str | None = None
        for shard, address in target.shards:
            scan = progress.shards.setdefault(shard, _ShardScan())
            if scan.complete(target.persistent):
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
            progress.shards.get(s, _ShardScan()).complete(target.persistent)
            for s, _ in target.shards
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
            run_id = str(client.info("server")["run_id"])
            if run_id != scan.run_id:
                if scan.run_id:
                    logger.info(
                        "%s/%s: %s restarted during the leftover sweep: scanning it again",
                        target.namespace,
                        target.cluster,
                        shard,
                    )
                progress.shards[shard] = scan = _ShardScan(run_id=run_id)
            while not scan.finished and self.clock() < deadline:
                cursor, keys = client.scan(scan.cursor, count=SCAN_COUNT)
                leftovers = [key for key in keys if is_leftover(key)]
                if leftovers:
                    progress.deleted += int(client.unlink(*leftovers))
                progress.scanned += len(keys)
                scan.cursor = int(cursor)
                if scan.cursor == 0:
                    scan.finished = True
                    logger.info(
                        "%s/%s: change %s: %s swept, %d leftover keys deleted so far",
                        target.namespace,
                        target.cluster,
                        target.change_id,
                        shard,
                        progress.deleted,
                    )
            if scan.finished and target.persistent and not scan.saved:
                self._snapshot(client, shard, scan)
        finally:
            client.close()

    @staticmethod
    def _snapshot(client: Any, shard: str, scan: _ShardScan) -> None:
        """Ask once for a snapshot after the sweep (BGSAVE), then see it written, a turn at a
        time: a snapshot in progress when the sweep ended may hold leftovers, so it is waited
        out before ours is asked for."""
        import redis

        info = client.info("persistence")
        # rdb_saves counts snapshots since start (Redis 7); older servers give the last one's time.
        saves = int(info.get("rdb_saves", info.get("rdb_last_save_time", 0)))
        if info.get("rdb_bgsave_in_progress"):
            return
        if scan.saves_before is None:
            client.bgsave()
            scan.saves_before = saves
            return
        if saves <= scan.saves_before:
            return
        if info.get("rdb_last_bgsave_status") != "ok":
            scan.saves_before = None  # ask again; say why meanwhile
            raise redis.RedisError(f"the snapshot after the sweep of {shard} failed")
        scan.saved = True
