"""What the operator's leftover sweep costs a capacity change: keys per second on one shard.

Before a change shadows or cuts over, the operator SCANs every shard that gains keys and
UNLINKs the keys it holds from an earlier ring (operator/cachefleet_operator/leftovers.py).
This loads one real redis-server, as shard-0, with ``--keys`` keys that the first ring of
4 → 5 → 4 gave to shard-0: what it holds when 5 → 4 begins if nothing expired (its own keys,
and the copies of those that 4 → 5 moved away, which are leftovers if 5 → 4 gives them back).
Then it times, in the same run:
- the reference: a bare SCAN of every key with redis-py (COUNT 1000), the least any sweep
  from the operator's process could cost;
- the sweep itself (RedisLeftoverSweeper with no time budget), which also places each key on
  both rings and deletes the leftovers.

Prints one JSON line, then a one-line summary with the rates, their ratio and what a
10-million-key shard would take. ``--quick`` is a smoke test, not the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cachefleet.ring import Ring, Shard, plan_change, planned_ring  # noqa: E402
from cachefleet_operator import leftovers  # noqa: E402
from cachefleet_operator.leftovers import RedisLeftoverSweeper, SweepTarget  # noqa: E402

from bench.entry import run  # noqa: E402
from tests.support import start_redis  # noqa: E402
from tests.support.redis_servers import stop_redis  # noqa: E402


def populate(client: Any, ring: Ring, keys: int) -> None:
    """``keys`` keys that ``ring`` gives to shard-0, written in pipelined batches."""
    shard_index = ring.lookup_function()
    own = ring.shard_names.index("shard-0")
    batch: dict[bytes, bytes] = {}
    written = 0
    candidate = 0
    while written < keys:
        key = f"item:{candidate}".encode()
        candidate += 1
        if shard_index(key) != own:
            continue
        batch[key] = b"v"
        written += 1
        if len(batch) == 1000 or written == keys:
            client.mset(batch)
            batch = {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2_000_000)
    parser.add_argument("--quick", action="store_true", help="a smoke test: 50,000 keys")
    args = parser.parse_args()
    keys = 50_000 if args.quick else args.keys

    def shards(n: int) -> list[Shard]:
        return [Shard(f"shard-{i}") for i in range(n)]

    four = planned_ring(shards(4))
    five = plan_change(four, shards(5))
    four_again = plan_change(five, shards(4))
    server = start_redis()
    try:
        with server.client() as client:
            populate_started = time.perf_counter()
            populate(client, four, keys)
            populate_seconds = time.perf_counter() - populate_started
            started = time.perf_counter()
            scanned = sum(1 for _ in client.scan_iter(count=leftovers.SCAN_COUNT))
            scan_seconds = time.perf_counter() - started
        target = SweepTarget(
            namespace="bench",
            cluster="sweep",
            uid="bench",
            change_id="v3",
            started_at="bench",
            shards=(("shard-0", server.address),),
            active=five,
            following=four_again,
        )
        sweeper = RedisLeftoverSweeper(budget_seconds=3600.0, timeout=30.0)
        started = time.perf_counter()
        progress = sweeper.sweep(target, datetime.now(UTC))
        sweep_seconds = time.perf_counter() - started
        with server.client() as client:
            remaining = int(client.dbsize())
    finally:
        stop_redis(server)
    assert progress.done, progress
    scan_rate = scanned / scan_seconds
    sweep_rate = progress.scanned / sweep_seconds
    result = {
        "bench": "leftover_sweep",
        "quick": args.quick,
        "keys": keys,
        "populate_seconds": round(populate_seconds, 3),
        "reference_scan": {"keys": scanned, "seconds": round(scan_seconds, 3)},
        "sweep": {
            "scanned": progress.scanned,
            "deleted": progress.deleted,
            "remaining": remaining,
            "seconds": round(sweep_seconds, 3),
        },
        "keys_per_second": {"scan": round(scan_rate), "sweep": round(sweep_rate)},
        "sweep_over_scan_time": round(sweep_seconds / scan_seconds, 3),
        "seconds_per_10M_keys": round(10_000_000 / sweep_rate, 1),
    }
    print(json.dumps(result))
    print(
        f"leftover_sweep{' (quick)' if args.quick else ''}: {keys:,} keys on one shard, "
        f"{progress.deleted:,} leftovers deleted; sweep {sweep_rate:,.0f} keys/s against "
        f"{scan_rate:,.0f} for a bare SCAN ({sweep_seconds / scan_seconds:.2f}× its time); "
        f"a 10M-key shard: {10_000_000 / sweep_rate:.0f} s"
    )
    return 0


if __name__ == "__main__":
    run(main)
