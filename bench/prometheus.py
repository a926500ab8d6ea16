"""Counters read off a sidecar's Prometheus text page (``/metrics``), for the benchmarks."""

from __future__ import annotations


def prometheus_counters(text: str, family: str) -> dict[str, float]:
    """The samples of a one-label counter family in a /metrics page, by label value:
    ``x_total{path="c"} 12.0`` gives ``{"c": 12.0}``."""
    prefix = family + "_total{"
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix) and "}" in line:
            labels, _, value = line[len(prefix) :].partition("} ")
            out[labels.partition('="')[2].rstrip('"')] = float(value)
    return out
