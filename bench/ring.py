"""Ring benchmark: ownership spread, keys moved per capacity change, single-key lookup speed.

Prints one JSON line, then a one-line summary. Targets (issue 2): planned spread ≤ 1% (fresh and
after 20 random changes), planned moved fraction ≤ 1.02 × ideal, ≥ 1,000,000 lookups per second
in one thread for 16 and 256 shards with 16-byte keys.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from cachefleet.ring import (
    Ring,
    Shard,
    classic_ring,
    ideal_moved_fraction,
    modulo_moved_fraction,
    movement,
    plan_change,
    planned_ring,
)

SIZES = (4, 10, 100)
SPREAD_TARGET = 0.01
MOVE_TARGET = 1.02
LOOKUP_TARGET = 1_000_000


def shards(count: int) -> list[Shard]:
    return [Shard(f"shard-{i}") for i in range(count)]


def spread_figures() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for n in SIZES:
        classic = classic_ring(shards(n))
        planned = planned_ring(shards(n))
        figures[str(n)] = {
            "classic_160": classic.spread(),
            "planned": planned.spread(),
            "planned_max_deviation": planned.max_deviation(),
        }
    return figures


def random_changes(count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    ring = planned_ring(shards(10))
    next_index = 10
    worst_spread = worst_deviation = worst_move_ratio = 0.0
    for _ in range(count):
        current = list(ring.shards)
        action = rng.choice(("add", "remove", "reweight"))
        if action == "add" or len(current) < 3:
            current.append(Shard(f"shard-{next_index}", rng.choice((0.5, 1.0, 2.0))))
            next_index += 1
        elif action == "remove":
            current.pop(rng.randrange(len(current)))
        else:
            i = rng.randrange(len(current))
            current[i] = Shard(current[i].name, rng.choice((0.5, 1.0, 1.5, 3.0)))
        after = plan_change(ring, current)
        ideal = ideal_moved_fraction(ring.shards, after.shards)
        if ideal > 0:
            worst_move_ratio = max(worst_move_ratio, movement(ring, after).moved_fraction / ideal)
        worst_spread = max(worst_spread, after.spread())
        worst_deviation = max(worst_deviation, after.max_deviation())
        ring = after
    return {
        "changes": count,
        "final_shards": len(ring.shards),
        "final_tokens": len(ring.tokens),
        "worst_spread": worst_spread,
        "worst_max_deviation": worst_deviation,
        "worst_moved_vs_ideal": worst_move_ratio,
    }


def moved_figures() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for n in SIZES:
        for m in (n + 1, n - 1):
            before_planned = planned_ring(shards(n))
            after_planned = plan_change(before_planned, shards(m))
            ideal = ideal_moved_fraction(shards(n), shards(m))
            planned = movement(before_planned, after_planned).moved_fraction
            classic = movement(classic_ring(shards(n)), classic_ring(shards(m))).moved_fraction
            figures[f"{n}->{m}"] = {
                "ideal": ideal,
                "planned": planned,
                "planned_vs_ideal": planned / ideal,
                "classic": classic,
                "modulo": modulo_moved_fraction(
                    [s.name for s in shards(n)], [s.name for s in shards(m)]
                ),
            }
    return figures


def lookups_per_second(ring: Ring, keys: list[bytes], repeats: int) -> float:
    lookup = ring.lookup_function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for key in keys:
            lookup(key)
        best = min(best, time.perf_counter() - start)
    return len(keys) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=500_000, help="keys per lookup run")
    parser.add_argument("--repeats", type=int, default=5, help="lookup runs (best counts)")
    args = parser.parse_args()

    rng = random.Random(42)
    keys = [rng.randbytes(16) for _ in range(args.keys)]
    lookups = {
        str(n): lookups_per_second(planned_ring(shards(n)), keys, args.repeats) for n in (16, 256)
    }
    spread = spread_figures()
    changes = random_changes(20, seed=7)
    moved = moved_figures()

    targets = {
        "planned_spread_le_1pct": all(v["planned"] <= SPREAD_TARGET for v in spread.values())
        and changes["worst_spread"] <= SPREAD_TARGET,
        "planned_moved_le_1.02x_ideal": all(
            v["planned_vs_ideal"] <= MOVE_TARGET for v in moved.values()
        )
        and changes["worst_moved_vs_ideal"] <= MOVE_TARGET,
        "lookups_ge_1M_per_s": all(v >= LOOKUP_TARGET for v in lookups.values()),
    }
    result = {
        "bench": "ring",
        "spread": spread,
        "random_changes": changes,
        "moved": moved,
        "lookups_per_second": lookups,
        "targets_met": targets,
    }
    print(json.dumps(result))
    worst_planned = max(max(v["planned"] for v in spread.values()), changes["worst_spread"])
    worst_moved = max(v["planned_vs_ideal"] for v in moved.values())
    print(
        f"ring: classic spread {spread['100']['classic_160']:.1%} (100 shards, 160 tokens); "
        f"planned worst spread {worst_planned:.2e} (incl. 20 random changes); "
        f"planned moves ≤ {worst_moved:.4f}× ideal (4→5 modulo {moved['4->5']['modulo']:.0%}); "
        f"lookups {lookups['16'] / 1e6:.2f}M/s (16 shards), {lookups['256'] / 1e6:.2f}M/s (256); "
        f"targets {'all met' if all(targets.values()) else 'MISSED: ' + str(targets)}"
    )


if __name__ == "__main__":
    main()
