"""Application traffic for the demo: a read-through cache in front of a pretend database.

Workers GET a key (Zipf-distributed, or the celebrity for ``celebrity_share`` of requests); on a
miss they "load it from the database" (counted, with its time) and SET it; a share of requests
update the database and delete the cached key. Each worker owns its keys (the celebrity is only
read), so any value read that differs from the database is the cache's fault: counted as stale.
Runs in a thread of its own.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import threading
import time
from dataclasses import dataclass, field

import redis.asyncio as aredis

CELEBRITY = b"celebrity"


@dataclass
class Counters:
    reads: list[tuple[float, bool]] = field(default_factory=list)  # (time, hit)
    loads: list[float] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    stale: list[tuple[float, bytes]] = field(default_factory=list)
    celebrity_reads: int = 0

    def since(self, start: float) -> tuple[int, int, int, int]:
        """(reads, misses, errors, stale) from ``start`` on."""
        reads = [hit for t, hit in self.reads if t >= start]
        return (
            len(reads),
            len(reads) - sum(reads),
            sum(1 for t, _ in self.errors if t >= start),
            sum(1 for t, _ in self.stale if t >= start),
        )


class Traffic:
    def __init__(
        self,
        port: int,
        *,
        keys: int = 5000,
        rate: float = 800.0,
        workers: int = 8,
        write_share: float = 0.05,
        zipf_s: float = 1.0,
        seed: int = 3,
    ) -> None:
        self.port = port
        self.keys = keys
        self.rate = rate
        self.workers = workers
        self.write_share = write_share
        self.celebrity_share = 0.0
        self.counters = Counters()
        self.database: dict[bytes, bytes] = {}
        self._cumulative = list(
            itertools.accumulate(1 / (r + 1) ** zipf_s for r in range(keys // workers))
        )
        self._seed = seed
        self._refills_asked = 0
        self._refilled: list[int] = [0] * workers  # by worker: the refills it has done
        self._stopping = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the demo's traffic did not start")

    def refill(self, timeout: float = 60.0) -> None:
        """Put every key back in the cache (after a shard came back empty). Each worker does
        its own keys between two requests, so no refill can race a worker's update."""
        self._refills_asked += 1
        deadline = time.monotonic() + timeout
        while min(self._refilled) < self._refills_asked:
            if time.monotonic() > deadline:
                raise RuntimeError("the demo's traffic did not refill the cache")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stopping = True
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        clients = [
            aredis.Redis(port=self.port, protocol=2, socket_timeout=2) for _ in range(self.workers)
        ]
        try:
            await asyncio.gather(*(self._prefill(c, w) for w, c in enumerate(clients)))
            self._ready.set()
            await asyncio.gather(*(self._worker(c, w) for w, c in enumerate(clients)))
        finally:
            self._ready.set()
            for client in clients:
                await client.aclose()

    def _key(self, worker: int, rank: int) -> bytes:
        return b"item:%d" % (rank * self.workers + worker)

    async def _prefill(self, client: aredis.Redis, worker: int) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for rank in range(len(self._cumulative)):
                key = self._key(worker, rank)
                value = self.database.setdefault(key, b"v-" + key)
                pipe.set(key, value, ex=3600)
            await pipe.execute()
        if worker == 0:
            self.database[CELEBRITY] = b"the celebrity's profile"
            await client.set(CELEBRITY, self.database[CELEBRITY], ex=3600)

    async def _worker(self, client: aredis.Redis, worker: int) -> None:
        rng = random.Random(self._seed * 100 + worker)
        cumulative, total = self._cumulative, self._cumulative[-1]
        interval = self.workers / self.rate
        next_tick = time.monotonic()
        counters = self.counters
        while not self._stopping:
            if self._refilled[worker] < self._refills_asked:
                asked = self._refills_asked
                await self._prefill(client, worker)
                self._refilled[worker] = asked
                next_tick = time.monotonic()
            next_tick += interval
            celebrity = rng.random() < self.celebrity_share  # read-only: no worker owns it
            key = (
                CELEBRITY
                if celebrity
                else self._key(worker, bisect.bisect_left(cumulative, rng.random() * total))
            )
            try:
                if not celebrity and rng.random() < self.write_share:
                    self.database[key] = b"%d" % rng.getrandbits(40)
                    await client.delete(key)
                else:
                    value = await client.get(key)
                    now = time.monotonic()
                    truth = self.database[key]
                    counters.reads.append((now, value is not None))
                    if celebrity:
                        counters.celebrity_reads += 1
                    if value is None:
                        counters.loads.append(now)
                        await client.set(key, truth, ex=3600)
                    elif value != truth:
                        counters.stale.append((now, key))
            except (aredis.RedisError, OSError) as error:
                counters.errors.append((time.monotonic(), str(error)))
            delay = next_tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_tick = time.monotonic()
