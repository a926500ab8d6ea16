"""Where the warm-up learns how warm the new ring's owners are.

The reconciler decides when to cut over; it only needs a number: the hit ratio of the shards
that are warming. In production that comes from the shards themselves (``INFO stats``); in the
e2e tests there are no running Redis pods (no kubelet), so the tests feed it through a file.
Both sit behind ``WarmupSignal`` and are chosen on the command line:
``--warmup-signal redis`` (default) or ``--warmup-signal file:/path/signal.json``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cachefleet_operator.plan import WarmupObservation


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


class WarmupSignal(Protocol):
    def observe(self, target: WarmupTarget, now: datetime) -> WarmupObservation:
        """The current hit ratio of ``target``'s shards; ``hit_ratio`` None if unmeasurable."""
        ...


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


class RedisWarmupSignal:
    """Asks each warming shard for ``INFO stats`` and sums keyspace hits and misses.

    The ratio is over the interval since the previous observation of the same shards, so it
    tracks how warm the shards are now rather than averaging in their cold start; the first
    observation uses the counters since the shards started (new shards start cold anyway).
    """

    def __init__(self, timeout: float = 1.0) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._previous: dict[tuple[str, str, tuple[str, ...]], tuple[int, int]] = {}

    def observe(self, target: WarmupTarget, now: datetime) -> WarmupObservation:
        import redis

        hits = misses = 0
        for address in target.addresses:
            host, _, port = address.rpartition(":")
            client = redis.Redis(
                host=host,
                port=int(port),
                password=target.password,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
            )
            try:
                stats = client.info("stats")
            except redis.RedisError:
                # A shard not up yet cannot be judged warm: report nothing for this round.
                return WarmupObservation(hit_ratio=None, observed_at=now)
            finally:
                client.close()
            hits += int(stats.get("keyspace_hits", 0))
            misses += int(stats.get("keyspace_misses", 0))
        key = (target.namespace, target.cluster, target.addresses)
        with self._lock:
            previous = self._previous.get(key)
            self._previous[key] = (hits, misses)
        if previous is not None and hits >= previous[0] and misses >= previous[1]:
            hits, misses = hits - previous[0], misses - previous[1]
        total = hits + misses
        return WarmupObservation(hit_ratio=hits / total if total else None, observed_at=now)


def parse_warmup_signal(spec: str) -> WarmupSignal:
    """``redis`` or ``file:PATH`` (the ``--warmup-signal`` option)."""
    if spec == "redis":
        return RedisWarmupSignal()
    if spec.startswith("file:") and len(spec) > len("file:"):
        return FileWarmupSignal(Path(spec[len("file:") :]))
    raise WarmupSignalError(f"--warmup-signal must be 'redis' or 'file:PATH', not {spec!r}")
