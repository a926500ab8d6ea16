"""The self-contained HTML report: the template with its CSS, its scripts and its data inlined.

Nothing in the page refers to the network: it opens from a file, on a machine without one. The
data block carries the knobs, the starting inputs, the measured figures with their sources, the
ring figures and the model's constants, so the JavaScript model restates none of them.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from typing import Any

from cachefleet import __version__
from cachefleet.sim import load, popularity
from cachefleet.sim.calibration import FIGURES
from cachefleet.sim.params import KNOB, KNOBS, WARMUP_STEPS_PERCENT, Params
from cachefleet.sim.rings import RingTables
from cachefleet.sim.scenarios import capacity, celebrity, connections, failure, latency

SCRIPTS = ("charts.js", "model.js", "app.js")

# How each strategy is named and drawn, on the page and in the PNGs alike.
LABELS: dict[str, dict[str, str]] = {
    "failure": {
        "none": "no failover (errors → database)",
        "modulo": "modulo hashing, node dropped",
        "consistent": "ketama ring, node ejected",
        "gutter": "sidecar with a gutter pool",
    },
    "capacity": {
        "modulo": "modulo hashing, immediate",
        "consistent": "ketama ring, immediate",
        "planned": "planned ring, immediate",
        "warmup": "planned ring with warm-up",
    },
}
COLOURS: dict[str, str] = {
    "none": "#7f7f7f",
    "modulo": "#d62728",
    "consistent": "#ff7f0e",
    "planned": "#9467bd",
    "gutter": "#2ca02c",
    "warmup": "#2ca02c",
    "client_side": "#d62728",
    "sidecar": "#1f77b4",
}


def constants() -> dict[str, Any]:
    """The model's fixed numbers, for the page's copy of it."""
    app_pods = KNOB["app_pods"]
    return {
        "popularity": {"exact_head": popularity.EXACT_HEAD, "growth": popularity.GROWTH},
        "load": {"average_s": load.AVERAGE_S},
        "connections": {
            "curve_points": connections.CURVE_POINTS,
            "pods_range": [app_pods.minimum, app_pods.maximum],
        },
        "latency": {
            "curve_points": latency.CURVE_POINTS,
            "curve_top_utilisation": latency.CURVE_TOP_UTILISATION,
        },
        "failure": {
            "strategies": list(failure.STRATEGIES),
            "before_s": failure.BEFORE_S,
            "after_s": failure.AFTER_S,
            "points": failure.POINTS,
        },
        "celebrity": {"curve_points": celebrity.CURVE_POINTS},
        "capacity": {
            "strategies": list(capacity.STRATEGIES),
            "before_s": capacity.BEFORE_S,
            "after_s": capacity.AFTER_S,
            "points": capacity.POINTS,
        },
        "warmup_steps_percent": list(WARMUP_STEPS_PERCENT),
    }


def page_data(params: Params, rings: RingTables) -> dict[str, Any]:
    return {
        "knobs": [dataclasses.asdict(knob) for knob in KNOBS],
        "params": params.as_dict(),
        "figures": {figure.name: figure.value for figure in FIGURES},
        "sources": [dataclasses.asdict(figure) for figure in FIGURES],
        "rings": rings.to_json(),
        "constants": constants(),
        "labels": LABELS,
        "style": COLOURS,
    }


def _asset(name: str) -> str:
    return resources.files("cachefleet.sim").joinpath("page", name).read_text(encoding="utf-8")


def _inline_script(source: str) -> str:
    # "</script" inside a script would end it early; no asset has one, and none may.
    if "</script" in source.lower():
        raise ValueError("an inlined script must not contain '</script'")
    return f"<script>\n{source}</script>"


def render_page(params: Params, rings: RingTables) -> str:
    data = json.dumps(page_data(params, rings), separators=(",", ":"), allow_nan=False)
    # JSON inside <script> must neither close the element nor open a comment: "<" only occurs
    # inside JSON strings, where \u003c means the same.
    data = data.replace("<", "\\u003c")
    return (
        _asset("template.html")
        .replace("/*STYLE*/", _asset("style.css"))
        .replace("/*VERSION*/", __version__)
        .replace("/*DATA*/", data)
        .replace("/*SCRIPTS*/", "\n".join(_inline_script(_asset(name)) for name in SCRIPTS))
    )
