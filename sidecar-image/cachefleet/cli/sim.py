"""``cachefleet sim``: write the topology simulator's page and PNG charts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cachefleet.cli import UsageError

DEFAULT_OUT = Path("cachefleet-sim")
PAGE_NAME = "index.html"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="model client-side sharding against the sidecar; write an HTML page and charts",
        description=(
            "Model a fleet two ways, client-side sharding and a sidecar per pod: connections, "
            "the extra hop, a node failure, a celebrity key and a capacity change. Writes a "
            "self-contained HTML page whose sliders recompute the model, and PNG charts."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"directory for {PAGE_NAME} and the PNGs (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        dest="overrides",
        help="start from this input instead of its default (repeatable); --list shows them",
    )
    parser.add_argument("--no-png", action="store_true", help="the page only (no matplotlib)")
    parser.add_argument("--json", action="store_true", help="print the model's numbers as JSON")
    parser.add_argument("--list", action="store_true", help="list the inputs and exit")
    parser.set_defaults(handler=run_sim)


def _overrides(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set {item!r}: expected NAME=VALUE")
        pairs[name.strip()] = value.strip()
    return pairs


def _list_knobs() -> str:
    from cachefleet.sim.params import KNOBS

    lines = []
    for knob in KNOBS:
        allowed = (
            " | ".join(f"{c:g}" for c in knob.choices)
            if knob.choices
            else f"{knob.minimum:g} … {knob.maximum:g}"
        )
        lines.append(f"{knob.name:<22} {knob.default:>12g}  [{allowed}]  {knob.label}")
    return "\n".join(lines)


def _numbers(result: dict[str, Any]) -> dict[str, Any]:
    """The result without its curves: what a person reads."""
    if isinstance(result, dict):
        return {
            key: _numbers(value)
            for key, value in result.items()
            if not isinstance(value, list) and not key.startswith("curve_")
        }
    return result


def _summary(result: dict[str, Any]) -> str:
    c, lat, f, cel, cap = (
        result[k] for k in ("connections", "latency", "failure", "celebrity", "capacity")
    )
    lines = [
        f"connections per cache node: client-side {c['client_side_per_shard']:,.0f}, "
        f"sidecar {c['sidecar_per_shard']:,.0f} ({c['reduction']:.3g}× fewer)",
        "extra hop: "
        + ("saturated" if lat["hop_us"] is None else f"{lat['hop_us']:.1f} µs")
        + f"; all sidecars use {lat['sidecar_cores']:.1f} cores; routing in the app instead: "
        f"{lat['smart_client_cores']:.2g} cores compiled, up to "
        f"{lat['python_client_cores']:.3g} with cachefleet's Python client",
        "node failure, peak database load × steady: "
        + ", ".join(f"{n} {o['peak_ratio']:.3g}×" for n, o in f["strategies"].items()),
        f"celebrity key: its shard at {cel['utilisation_without_l1']:.0%} of capacity without "
        f"L1, {cel['utilisation_with_l1']:.0%} with (hot at the sidecars: "
        f"{'yes' if cel['hot'] else 'no'}; a per-sidecar threshold of at most "
        f"{cel['threshold_to_protect_shard']:.3g}/s would protect it)",
        "capacity change, peak database load × steady: "
        + ", ".join(f"{n} {o['peak_ratio']:.3g}×" for n, o in cap["strategies"].items()),
    ]
    return "\n".join(lines)


def run_sim(args: argparse.Namespace) -> int:
    from cachefleet.sim.charts import MissingMatplotlib, pyplot, write_charts
    from cachefleet.sim.model import simulate
    from cachefleet.sim.page import render_page
    from cachefleet.sim.params import RESIZE_RANGE, SHARD_CHOICES, params_with
    from cachefleet.sim.rings import ring_tables

    if args.list:
        print(_list_knobs())
        return 0
    try:
        params = params_with(_overrides(args.overrides))
        if not args.no_png:
            pyplot()  # before writing anything: all the outputs or none
    except (ValueError, MissingMatplotlib) as error:
        raise UsageError(str(error)) from None
    rings = ring_tables(SHARD_CHOICES, range(RESIZE_RANGE[0], RESIZE_RANGE[1] + 1))
    result = simulate(params, rings)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        page = args.out / PAGE_NAME
        page.write_text(render_page(params, rings), encoding="utf-8")
        charts = [] if args.no_png else write_charts(result, params.as_dict(), args.out)
    except OSError as error:
        raise UsageError(f"cannot write to {args.out}: {error.strerror or error}") from None
    if args.json:
        print(json.dumps(_numbers(result)))
    else:
        print(_summary(result))
        print(f"\nwrote {page}" + "".join(f"\nwrote {chart}" for chart in charts))
    return 0
