"""``cachefleet ring plan``: what a capacity change does to the keyspace, before doing it."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from typing import Any

from cachefleet.cli import UsageError
from cachefleet.ring import (
    DEFAULT_TOKENS_PER_WEIGHT,
    Ring,
    RingError,
    Shard,
    classic_ring,
    ideal_moved_fraction,
    modulo_moved_fraction,
    movement,
    plan_change,
    planned_ring,
)

STRATEGIES = ("planned", "classic")


def register(subparsers: Any) -> None:
    ring = subparsers.add_parser("ring", help="inspect and plan hash rings")
    ring_commands = ring.add_subparsers(dest="ring_command", required=True, metavar="SUBCOMMAND")
    plan = ring_commands.add_parser(
        "plan",
        help="show what a capacity change moves",
        description="Ownership before and after a change of shards, and the keys that move.",
    )
    plan.add_argument(
        "--shards", type=int, required=True, metavar="N", help="shards now (shard-0 …)"
    )
    plan.add_argument("--to", type=int, metavar="M", help="shards after the change")
    plan.add_argument("--strategy", choices=STRATEGIES, default="planned")
    plan.add_argument(
        "--tokens",
        type=int,
        default=DEFAULT_TOKENS_PER_WEIGHT,
        metavar="T",
        help=f"tokens per unit of weight (default {DEFAULT_TOKENS_PER_WEIGHT})",
    )
    plan.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="NAME=W",
        help="weight of a shard after the change (repeatable)",
    )
    plan.add_argument(
        "--remove",
        action="append",
        default=[],
        metavar="NAME",
        help="remove this shard (repeatable)",
    )
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.set_defaults(handler=run_plan)


@dataclass(frozen=True)
class ChangePlan:
    strategy: str
    tokens_per_weight: int
    before: Ring
    after: Ring


def shards_after(args: argparse.Namespace) -> list[Shard]:
    """Apply --remove, then --to (adding shard-N … or dropping from the end), then --weight."""
    if args.shards < 1:
        raise UsageError(f"--shards must be at least 1, not {args.shards}")
    names = [f"shard-{i}" for i in range(args.shards)]
    for name in args.remove:
        if name not in names:
            raise UsageError(f"--remove {name}: there is no shard named {name!r}")
        names.remove(name)
    target = len(names) if args.to is None else args.to
    if target < 1:
        raise UsageError(f"the change would leave {target} shards; a ring needs at least one")
    next_index = args.shards
    while len(names) < target:
        names.append(f"shard-{next_index}")
        next_index += 1
    del names[target:]
    weights = dict.fromkeys(names, 1.0)
    for item in args.weight:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--weight {item!r}: expected NAME=WEIGHT")
        if name not in weights:
            raise UsageError(
                f"--weight {item!r}: there is no shard named {name!r} after the change"
            )
        try:
            weights[name] = float(value)
        except ValueError:
            raise UsageError(f"--weight {item!r}: {value!r} is not a number") from None
        if not math.isfinite(weights[name]) or weights[name] <= 0:
            raise UsageError(f"--weight {item!r}: a weight must be a finite number above zero")
    return [Shard(name, weights[name]) for name in names]


def make_plan(args: argparse.Namespace) -> ChangePlan:
    after_shards = shards_after(args)
    before_shards = [Shard(f"shard-{i}") for i in range(args.shards)]
    try:
        if args.strategy == "classic":
            before = classic_ring(before_shards, args.tokens)
            after = classic_ring(after_shards, args.tokens)
        else:
            before = planned_ring(before_shards, args.tokens)
            after = plan_change(before, after_shards, args.tokens)
    except RingError as error:
        raise UsageError(str(error)) from None
    return ChangePlan(args.strategy, args.tokens, before, after)


def plan_report(plan: ChangePlan) -> dict[str, Any]:
    before, after = plan.before, plan.after
    moved = movement(before, after)
    ideal = ideal_moved_fraction(before.shards, after.shards)
    share_before, share_after = before.shares(), after.shares()
    weights = {s.name: s.weight for s in before.shards} | {s.name: s.weight for s in after.shards}
    names = [*before.shard_names, *(n for n in after.shard_names if n not in share_before)]
    return {
        "strategy": plan.strategy,
        "tokens_per_weight": plan.tokens_per_weight,
        "shards_before": len(before.shards),
        "shards_after": len(after.shards),
        "tokens_before": len(before.tokens),
        "tokens_after": len(after.tokens),
        "moved_fraction": moved.moved_fraction,
        "ideal_moved_fraction": ideal,
        "modulo_moved_fraction": modulo_moved_fraction(before.shard_names, after.shard_names),
        "spread_before": before.spread(),
        "spread_after": after.spread(),
        "shards": [
            {
                "name": name,
                "weight": weights[name],
                "share_before": share_before.get(name, 0.0),
                "share_after": share_after.get(name, 0.0),
            }
            for name in names
        ],
        "moves": [
            {"from": source, "to": target, "fraction": fraction}
            for (source, target), fraction in moved.pair_fractions().items()
        ],
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['shards_before']} → {report['shards_after']} shards, {report['strategy']} ring, "
        f"{report['tokens_per_weight']} tokens per unit of weight "
        f"({report['tokens_before']} → {report['tokens_after']} tokens)",
        "",
        f"{'shard':<16} {'weight':>7} {'before':>9} {'after':>9} {'change':>9}",
    ]
    for shard in report["shards"]:
        change = shard["share_after"] - shard["share_before"]
        lines.append(
            f"{shard['name']:<16} {shard['weight']:>7g} {shard['share_before']:>9.3%} "
            f"{shard['share_after']:>9.3%} {change:>+9.3%}"
        )
    moved, ideal = report["moved_fraction"], report["ideal_moved_fraction"]
    versus = f"{moved / ideal:.3f}× ideal" if ideal > 0 else "no change needed"
    lines += [
        "",
        f"spread of ownership (std of share ÷ fair share): before {report['spread_before']:.3%}, "
        f"after {report['spread_after']:.3%}",
        f"keys that move: {moved:.3%} (ideal {ideal:.3%}, {versus})",
        f"modulo hashing (hash % N) would move {report['modulo_moved_fraction']:.3%}",
    ]
    return "\n".join(lines)


def run_plan(args: argparse.Namespace) -> int:
    report = plan_report(make_plan(args))
    print(json.dumps(report) if args.json else format_report(report))
    return 0
