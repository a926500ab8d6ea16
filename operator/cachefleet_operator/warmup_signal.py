"""Where the warm-up learns how warm the new ring's owners are, and which config the sidecars run.

The reconciler decides when to cut over; it only needs a number: the hit ratio of the moved
keys on the shards that are warming, as the sidecars see it. Each sidecar shadows reads of moved
keys to their next owner and adds what it saw to a hash on that shard,
``cachefleet:warmup:<changeId>`` (fields ``hits`` and ``misses``; a hit is a read the active owner
hit and the warming owner answered the same). Reading those hashes gives every sidecar's
measurement at once, with no need to find and scrape each application pod; ``INFO stats`` would
not do: copies never move its counters, and a shard that keeps its own keys while it gains
others mostly counts its normal traffic. Each sidecar also says which config it runs
(``cachefleet:sidecars`` on the shard that owns that key), which the leftover sweep, the first
copies of Shadowing, the end of Draining and Finalizing wait for.

In the e2e tests there are no running Redis pods (no kubelet), so the tests feed the hit ratio
through a file. Both sit behind ``WarmupSignal`` and are chosen on the command line:
``--warmup-signal redis`` (default) or ``--warmup-signal file:/path/signal.json``.

The same choice says whether there are shards to sweep while a change is Provisioning (see
leftovers.py): the redis signal sweeps them; the file signal has no Redis to reach, so it
reports the sweep done with nothing scanned.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cachefleet.config.keys import (
    HEARTBEAT_KEY,
    HEARTBEAT_SECONDS,
    HEARTBEAT_WATCH_FIELD,
    change_id,
    warmup_stats_key,
)
from cachefleet.ring import Ring, RingAssignment
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cachefleet_operator import naming
from cachefleet_operator.leftovers import RedisLeftoverSweeper, SweepTarget, receiving_shards
from cachefleet_operator.plan import LeftoverSweep, SidecarReports, WarmupObservation
from cachefleet_operator.shard_client import shard_client

T = TypeVar("T")

logger = logging.getLogger("cachefleet.operator")

# Sidecars say which config they run every 5 s; one silent for longer than this is not counted.
SIDECAR_REPORT_MAX_AGE = 30.0


class WarmupSignalError(Exception):
    """The signal could not be read (bad file, bad specification)."""


@dataclass(frozen=True)
class WarmupTarget:
    """The shards whose warmth decides the cut-over, as the sidecars reach them."""

    namespace: str
    cluster: str
    # HOST:PORT of each warming shard (its stable DNS name).
    addresses: tuple[str, ...]
    password: str | None = None
    change_id: str = ""  # the sidecars' counters are under cachefleet:warmup:<change_id>
    # HOST:PORT of the shards where sidecars report their config (the heartbeat key's owners).
    heartbeat_addresses: tuple[str, ...] = ()
    # While Provisioning: the shards to delete leftover keys on.
    sweep: SweepTarget | None = None


PROVISIONING = "Provisioning"
SHADOWING = "Shadowing"


def warmup_target(cluster: dict[str, Any], password: str | None) -> WarmupTarget | None:
    """What this turn of the warm-up needs from the shards of a CacheCluster as the API returns
    it: the leftovers to sweep (while provisioning), the measurement (while shadowing) or the
    sidecars' reports (in every phase); None outside a change."""
    warm_up = (cluster.get("status") or {}).get("warmUp") or {}
    phase = warm_up.get("phase")
    if phase is None:
        return None
    meta = cluster["metadata"]

    def address(shard: str) -> str:
        return naming.shard_address(meta["name"], shard, meta["namespace"])

    rings = [
        RingAssignment.model_validate(warm_up[side]["assignment"]).to_ring()
        for side in ("fromRing", "toRing")
    ]
    change = change_id(warm_up["toRing"]["version"])
    heartbeats = sorted({address(ring.shard_for(HEARTBEAT_KEY.encode())) for ring in rings})
    if phase == PROVISIONING:
        persistent = bool(((cluster.get("spec") or {}).get("persistence") or {}).get("enabled"))
        added = set(warm_up.get("addedShards") or ())
        shards = [
            shard
            for shard in receiving_shards(rings[0], rings[1])
            # An added shard without persistence starts empty: nothing of an earlier ring.
            if persistent or shard not in added
        ]
        # The sweep begins once the machine says every sidecar runs the Provisioning config;
        # until then only the sidecars' reports are read.
        started = warm_up.get("sweepStartedAt")
        sweep = None
        if started:
            sweep = SweepTarget(
                namespace=meta["namespace"],
                cluster=meta["name"],
                uid=str(meta.get("uid") or ""),
                change_id=change,
                started_at=started,
                shards=tuple((shard, address(shard)) for shard in shards),
                active=rings[0],
                following=rings[1],
                password=password,
                persistent=persistent,
            )
        return WarmupTarget(
            namespace=meta["namespace"],
            cluster=meta["name"],
            addresses=(),
            password=password,
            change_id=change,
            heartbeat_addresses=tuple(heartbeats),
            sweep=sweep,
        )
    warming = gaining_shards(rings[0], rings[1]) if phase == SHADOWING else []
    return WarmupTarget(
        namespace=meta["namespace"],
        cluster=meta["name"],
        addresses=tuple(address(shard) for shard in warming),
        password=password,
        change_id=change,
        heartbeat_addresses=tuple(heartbeats),
    )


def gaining_shards(before: Ring, after: Ring) -> list[str]:
    """Shards that own more of the keyspace on the next ring: the ones that start cold."""
    old, new = before.shares(), after.shares()
    return sorted(name for name, share in new.items() if share > old.get(name, 0.0))


class WarmupSignal(Protocol):
    def observe(self, target: WarmupTarget, now: datetime) -> WarmupObservation:
        """The current hit ratio of ``target``'s shards; ``hit_ratio`` None if unmeasurable."""
        ...

    def sidecars(self, target: WarmupTarget, now: datetime) -> SidecarReports | None:
        """Which config each sidecar heard from recently runs; None when nobody can tell."""
        ...

    def sweep(self, target: SweepTarget, now: datetime) -> LeftoverSweep:
        """Go on deleting the keys ``target``'s shards hold from an earlier ring."""
        ...


@dataclass(frozen=True)
class SignalReading:
    """What one turn read: the sidecars' reports (in every phase of a change), the leftover
    sweep (provisioning), the warming shards' hit ratio (shadowing)."""

    warmup: WarmupObservation | None = None
    sidecars: SidecarReports | None = None
    leftovers: LeftoverSweep | None = None


def observe_signal(
    signal: WarmupSignal, target: WarmupTarget | None, now: datetime
) -> SignalReading:
    """What this turn of the warm-up needs from ``signal``: the sidecars' reports, and the
    leftover sweep while provisioning or the warming shards' hit ratio while shadowing; nothing
    outside a change (``target`` None), and None for a reading that cannot be read."""
    if target is None:
        return SignalReading()
    sweep = target.sweep
    return SignalReading(
        warmup=_read(target, lambda: signal.observe(target, now)) if target.addresses else None,
        sidecars=_read(target, lambda: signal.sidecars(target, now)),
        leftovers=_read(target, lambda: signal.sweep(sweep, now)) if sweep is not None else None,
    )


def _read(target: WarmupTarget, read: Callable[[], T]) -> T | None:
    """One reading, or None when it cannot be read: the warm-up then sees "nothing measured"
    (and waits, or falls back to its ramp timeout) rather than the whole reconcile failing;
    one unreadable reading does not lose the others."""
    try:
        return read()
    except WarmupSignalError as error:
        logger.warning("%s/%s: warm-up signal: %s", target.namespace, target.cluster, error)
        return None


class _Reading(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    hit_ratio: float | None = Field(None, alias="hitRatio", ge=0.0, le=1.0)


class _SignalFile(_Reading):
    # Per-cluster readings keyed "NAMESPACE/NAME" override the top-level one, so one file can
    # drive several CacheClusters differently.
    clusters: dict[str, _Reading] = Field(default_factory=dict)


class FileWarmupSignal:
    """Reads ``{"hitRatio": 0.95}`` (optionally ``"clusters": {"ns/name": {...}}``) from a file.

    A missing file means "nothing measured yet"; a malformed one is an error, so a typo in a
    test shows up instead of silently stalling the warm-up.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def observe(self, target: WarmupTarget, now: datetime) -> WarmupObservation:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return WarmupObservation(hit_ratio=None, observed_at=now)
        except OSError as error:
            raise WarmupSignalError(f"cannot read {self.path}: {error}") from error
        try:
            reading = _SignalFile.model_validate(json.loads(text))
        except (ValueError, ValidationError) as error:
            raise WarmupSignalError(f"{self.path}: {error}") from error
        override = reading.clusters.get(f"{target.namespace}/{target.cluster}")
        hit_ratio = override.hit_ratio if override is not None else reading.hit_ratio
        return WarmupObservation(hit_ratio=hit_ratio, observed_at=now)

    def sidecars(self, target: WarmupTarget, now: datetime) -> SidecarReports | None:
        return SidecarReports(versions={}, observed_at=now)  # the e2e clusters run no sidecars

    def sweep(self, target: SweepTarget, now: datetime) -> LeftoverSweep:
        # The e2e clusters run no Redis: no shard holds a key to sweep.
        return LeftoverSweep(done=True, scanned=0, deleted=0, observed_at=now)


class RedisWarmupSignal:
    """Sums the hits and misses every sidecar added to ``cachefleet:warmup:<changeId>`` on each
    warming shard.

    The ratio is over the interval since the previous observation of the same shards, so it
    tracks how warm the shards are now rather than averaging in their cold start; the first
    observation uses everything counted so far.
    """

    def __init__(
        self,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
        sweeper: RedisLeftoverSweeper | None = None,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.sweeper = sweeper or RedisLeftoverSweeper()
        self._lock = threading.Lock()
        self._previous: dict[tuple[str, str, str, tuple[str, ...]], tuple[int, int]] = {}

    def _client(self, address: str, password: str | None) -> Any:
        return shard_client(address, password, self.timeout)

    def observe(self, target: WarmupTarget, now: datetime) -> WarmupObservation:
        import redis

        hits = misses = 0
        key = warmup_stats_key(target.change_id)
        for address in target.addresses:
            client = self._client(address, target.password)
            try:
                counts = client.hgetall(key)
            except redis.RedisError:
                # A shard not up yet cannot be judged warm: report nothing for this round.
                return WarmupObservation(hit_ratio=None, observed_at=now)
            finally:
                client.close()
            hits += int(counts.get(b"hits", 0))
            misses += int(counts.get(b"misses", 0))
        memory = (target.namespace, target.cluster, target.change_id, target.addresses)
        with self._lock:
            previous = self._previous.get(memory)
            self._previous[memory] = (hits, misses)
        if previous is not None and hits >= previous[0] and misses >= previous[1]:
            hits, misses = hits - previous[0], misses - previous[1]
        total = hits + misses
        return WarmupObservation(hit_ratio=hits / total if total else None, observed_at=now)

    def sidecars(self, target: WarmupTarget, now: datetime) -> SidecarReports | None:
        import redis

        if not target.heartbeat_addresses:
            return None
        newest: dict[str, tuple[float, str]] = {}
        settled = True
        for address in target.heartbeat_addresses:
            client = self._client(address, target.password)
            try:
                entries = client.hgetall(HEARTBEAT_KEY)
                settled = self._watching(client, entries) and settled
            except redis.RedisError:
                # The sidecars that report there would go unseen: who lags is not known.
                return None
            finally:
                client.close()
            for sidecar, value in entries.items():
                version, _, stamp = value.decode("utf-8", "replace").rpartition(" ")
                try:
                    when = float(stamp)
                except ValueError:
                    continue
                name = sidecar.decode("utf-8", "replace")
                if when > newest.get(name, (0.0, ""))[0]:
                    newest[name] = (when, version)
        if not settled:
            return None
        cutoff = self.clock() - SIDECAR_REPORT_MAX_AGE
        versions = {name: version for name, (when, version) in newest.items() if when >= cutoff}
        return SidecarReports(versions=versions, observed_at=now)

    def _watching(self, client: Any, entries: dict[bytes, bytes]) -> bool:
        """Takes the operator's own field out of ``entries`` and says whether the hash has been
        watched long enough to list the sidecars: a hash found without that field is new or was
        emptied (its shard restarted or flushed), and every sidecar gets two heartbeats' time
        to write its entry again before an absent one means there is no such sidecar."""
        since = entries.pop(HEARTBEAT_WATCH_FIELD.encode(), None)
        try:
            watched_for = self.clock() - float(since) if since is not None else None
        except ValueError:
            watched_for = None
        if watched_for is None:
            client.hset(HEARTBEAT_KEY, HEARTBEAT_WATCH_FIELD, f"{self.clock():.3f}")
            return False
        return watched_for >= 2 * HEARTBEAT_SECONDS

    def sweep(self, target: SweepTarget, now: datetime) -> LeftoverSweep:
        return self.sweeper.sweep(target, now)


def parse_warmup_signal(spec: str) -> WarmupSignal:
    """``redis`` or ``file:PATH`` (the ``--warmup-signal`` option)."""
    if spec == "redis":
        return RedisWarmupSignal()
    if spec.startswith("file:") and len(spec) > len("file:"):
        return FileWarmupSignal(Path(spec[len("file:") :]))
    raise WarmupSignalError(f"--warmup-signal must be 'redis' or 'file:PATH', not {spec!r}")
