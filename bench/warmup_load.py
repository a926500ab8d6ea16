"""The read-through workload of ``bench/warmup.py``: an application with a cache in front of its
database, the way most use Redis.

The cache starts as after long use (``prefill``). A worker picks a key from a Zipf distribution and
GETs it; on a miss it "loads it from the database" (counted, with its time) and SETs it with a long
TTL. A share of the operations are database updates, of keys drawn from the same distribution, which
delete the cached key: its next read misses. So the steady state has a steady database load, the
baseline a capacity change is measured against. Each worker owns its own keys (rank % workers), so
two workers never race on one key: the classic read-through race (a reader sets a value an update
just replaced) cannot happen, and any stale read is the cache's fault. Keys reach the cache through
a ``Router`` (the sidecar, or a client that shards by modulo)."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import time
from dataclasses import dataclass, field

import mmh3

from bench.failover_load import Client, RequestFailed


class Zipf:
    """Key ranks drawn with probability proportional to 1 / rank**s."""

    def __init__(self, keys: int, s: float, seed: int) -> None:
        self.cumulative = list(itertools.accumulate(1 / (rank + 1) ** s for rank in range(keys)))
        self.total = self.cumulative[-1]
        self.rng = random.Random(seed)

    def draw(self) -> int:
        return bisect.bisect_left(self.cumulative, self.rng.random() * self.total)


class Router:
    """Which connection a key's request goes to."""

    def client(self, key: bytes, worker: int) -> Client:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class ThroughSidecar(Router):
    def __init__(self, port: int, workers: int, timeout: float) -> None:
        self.clients = [Client(port, timeout) for _ in range(workers)]

    def client(self, key: bytes, worker: int) -> Client:
        return self.clients[worker]

    def close(self) -> None:
        for client in self.clients:
            client.close()


class ByModulo(Router):
    """Client-side sharding by ``hash % N``: what most hand-rolled sharding does. Changing N
    moves almost every key."""

    def __init__(self, ports: list[int], workers: int, timeout: float, shards: int) -> None:
        self.clients = [[Client(port, timeout) for port in ports] for _ in range(workers)]
        self.shards = shards

    def client(self, key: bytes, worker: int) -> Client:
        return self.clients[worker][mmh3.hash(key, 0, False) % self.shards]

    def close(self) -> None:
        for clients in self.clients:
            for client in clients:
                client.close()


@dataclass
class Ledger:
    """What the workload saw, as times (``time.monotonic``)."""

    reads: list[tuple[float, bytes, bool]] = field(default_factory=list)  # (time, key, hit)
    loads: list[float] = field(default_factory=list)  # database loads
    failures: list[tuple[float, str]] = field(default_factory=list)
    stale: list[tuple[float, bytes]] = field(default_factory=list)


@dataclass
class Workload:
    router: Router
    keys: int
    zipf_s: float
    rate: float  # requests per second, over all workers
    workers: int
    ttl_seconds: float
    write_share: float
    seed: int = 7
    ledger: Ledger = field(default_factory=Ledger)
    database: dict[bytes, bytes] = field(default_factory=dict)
    stopping: bool = False

    async def run(self) -> None:
        await asyncio.gather(*(self._worker(w) for w in range(self.workers)))

    async def prefill(self) -> None:
        """The cache as it stands after long use, so the baseline is steady from the start: a
        key's last operation was an update (which deleted it) with probability ``write_share``,
        whatever its popularity; every other key is cached with its database value."""

        async def fill(worker: int) -> None:
            rng = random.Random(self.seed * 7919 + worker)
            for rank in range(worker, self.keys, self.workers):
                if rng.random() < self.write_share:
                    continue
                key = self.key(rank)
                value = self.database.setdefault(key, b"v-" + key)
                client = self.router.client(key, worker)
                await client.call(b"SET", key, value, b"PX", b"%d" % int(self.ttl_seconds * 1000))

        await asyncio.gather(*(fill(w) for w in range(self.workers)))

    def key(self, rank: int) -> bytes:
        return b"item:%d" % rank

    async def _worker(self, worker: int) -> None:
        zipf = Zipf(len(range(worker, self.keys, self.workers)), self.zipf_s, self.seed + worker)
        rng = random.Random(worker)
        interval = self.workers / self.rate
        next_tick = time.monotonic()
        ledger = self.ledger
        while not self.stopping:
            next_tick += interval
            key = self.key(zipf.draw() * self.workers + worker)
            client = self.router.client(key, worker)
            try:
                if rng.random() < self.write_share:
                    self.database[key] = b"%d" % rng.getrandbits(40)
                    await client.call(b"DEL", key)
                else:
                    value = await client.call(b"GET", key)
                    truth = self.database.setdefault(key, b"v-" + key)
                    now = time.monotonic()
                    ledger.reads.append((now, key, value is not None))
                    if value is None:
                        ledger.loads.append(now)
                        ttl = int(self.ttl_seconds * rng.uniform(0.8, 1.2) * 1000)
                        await client.call(b"SET", key, truth, b"PX", b"%d" % ttl)
                    elif value != truth:
                        ledger.stale.append((now, key))
            except RequestFailed as error:
                ledger.failures.append((time.monotonic(), str(error)))
            delay = next_tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_tick = time.monotonic()  # behind: skip, do not burst


def rates(times: list[float], start: float, end: float, bin_seconds: float) -> list[float]:
    """Events per second in consecutive bins from ``start``."""
    bins = [0] * max(1, int((end - start) / bin_seconds))
    for t in times:
        index = math.floor((t - start) / bin_seconds)
        if 0 <= index < len(bins):
            bins[index] += 1
    return [count / bin_seconds for count in bins]


def moving_average(values: list[float], width: int) -> list[float]:
    out = []
    for i in range(len(values)):
        window = values[max(0, i - width + 1) : i + 1]
        out.append(sum(window) / len(window))
    return out
