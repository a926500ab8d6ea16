"""PNG charts of the model for the README, drawn with matplotlib.

matplotlib is the ``sim`` extra, not a dependency of the sidecar: it is imported inside
``write_charts`` only, and a missing install is reported as such.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cachefleet.sim.calibration import figure
from cachefleet.sim.page import COLOURS, LABELS

CHART_NAMES = ("connections", "hop", "failure", "celebrity", "capacity")


class MissingMatplotlib(RuntimeError):
    """The PNG charts need the ``sim`` extra."""


def pyplot() -> Any:
    """matplotlib's pyplot on a file-only backend, or MissingMatplotlib saying what to install."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise MissingMatplotlib(
            "PNG charts need matplotlib: pip install 'cachefleet[sim]' (or pass --no-png)"
        ) from None
    matplotlib.use("Agg")  # files only: no display, and no GUI toolkit imported
    import matplotlib.pyplot as plt

    return plt


def _plain_numbers(ax: Any) -> None:
    """30k rather than 3×10⁴; on a log axis, ticks at 1, 2 and 5 of each decade when there are
    few decades, and no label on the minor ticks (they crowd)."""
    import math

    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        axis.set_major_formatter(EngFormatter(sep=""))
        if axis.get_scale() == "log":
            low, high = limits
            if math.log10(high / low) < 3:
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_minor_formatter(NullFormatter())


def _connections(ax: Any, result: dict[str, Any], params: dict[str, float]) -> None:
    c = result["connections"]
    ax.loglog(
        c["curve_pods"],
        c["curve_client_side_per_shard"],
        color=COLOURS["client_side"],
        label="client-side sharding",
    )
    ax.loglog(
        c["curve_pods"],
        c["curve_sidecar_per_shard"],
        color=COLOURS["sidecar"],
        label="sidecar per pod",
    )
    ax.axhline(c["maxclients"], color="#b00", linestyle="--", label="Redis default maxclients")
    ax.axvline(params["app_pods"], color="#555", linestyle=":")
    ax.set(
        xlabel="app pods",
        ylabel="connections per cache node",
        title=f"Connections per cache node ({params['workers_per_pod']:g} processes per pod)",
    )


def _hop(ax: Any, result: dict[str, Any], params: dict[str, float]) -> None:
    lat = result["latency"]
    ax.plot(
        lat["curve_rate_per_pod"],
        lat["curve_hop_us"],
        color=COLOURS["sidecar"],
        label=f"sidecar hop, pipeline {params['pipeline']:g}",
    )
    ax.axhline(
        figure("python_client_added_us"),
        color=COLOURS["client_side"],
        linestyle="--",
        label="cachefleet's Python smart client (measured)",
    )
    ax.axvline(lat["rate_per_pod"], color="#555", linestyle=":", label="this fleet")
    ax.set_ylim(bottom=0)
    ax.set(
        xlabel="requests/s through one sidecar",
        ylabel="added to a read (µs)",
        title="The extra hop under load (measured idle hop, M/M/1 queue)",
    )


def _over_time(kind: str, title: str) -> Callable[[Any, dict[str, Any], dict[str, float]], None]:
    def draw(ax: Any, result: dict[str, Any], params: dict[str, float]) -> None:
        scenario = result[kind]
        for name, outcome in scenario["strategies"].items():
            ax.semilogy(
                scenario["time"],
                outcome["database_rate"],
                color=COLOURS[name],
                linestyle="--" if name == "consistent" else "-",
                label=f"{LABELS[kind][name]} (peak {outcome['peak_ratio']:.2g}×)",
            )
        ax.axhline(scenario["baseline_database_rate"], color="#555", linewidth=0.8)
        ax.set(xlabel="seconds", ylabel="database reads/s", title=title.format(**params))

    return draw


def _celebrity(ax: Any, result: dict[str, Any], params: dict[str, float]) -> None:
    c = result["celebrity"]
    ax.plot(
        c["curve_rate"], c["curve_without_l1"], color=COLOURS["client_side"], label="without L1"
    )
    ax.plot(c["curve_rate"], c["curve_with_l1"], color=COLOURS["sidecar"], label="sidecar L1")
    ax.axhline(
        c["shard_capacity"], color="#b00", linestyle="--", label="one shard's measured capacity"
    )
    ax.axvline(params["celebrity_rate"], color="#555", linestyle=":", label="this key")
    ax.set(
        xlabel="the celebrity key's reads/s, whole fleet",
        ylabel="its shard's requests/s",
        title=f"A celebrity key over {params['app_pods']:g} sidecars, each hot from "
        f"{params['hot_threshold']:g} reads/s",
    )


DRAW: dict[str, Callable[[Any, dict[str, Any], dict[str, float]], None]] = {
    "connections": _connections,
    "hop": _hop,
    "failure": _over_time(
        "failure", "A node of {shards:g} fails for {outage_s:g} s: database load"
    ),
    "celebrity": _celebrity,
    "capacity": _over_time("capacity", "{resize_from:g} → {resize_to:g} shards: database load"),
}


def write_charts(result: dict[str, Any], params: dict[str, float], directory: Path) -> list[Path]:
    plt = pyplot()
    written = []
    for name in CHART_NAMES:
        figure, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
        DRAW[name](ax, result, params)
        _plain_numbers(ax)
        ax.grid(True, which="major", color="#e6e6e6")
        ax.legend(fontsize=8)
        figure.tight_layout()
        path = directory / f"sim-{name}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written
