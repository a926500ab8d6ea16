"""Reading labelled counters off a /metrics page, as the benchmarks do."""

from __future__ import annotations

from bench.prometheus import prometheus_counters


def test_prometheus_counters_by_label() -> None:
    text = (
        "# HELP cachefleet_sidecar_path_requests_total ...\n"
        'cachefleet_sidecar_path_requests_total{path="c"} 1234.0\n'
        'cachefleet_sidecar_path_requests_total{path="python"} 5.0\n'
        'cachefleet_sidecar_route_requests_total{route="gutter"} 7.0\n'
    )
    assert prometheus_counters(text, "cachefleet_sidecar_path_requests") == {
        "c": 1234.0,
        "python": 5.0,
    }
    assert prometheus_counters(text, "cachefleet_sidecar_route_requests") == {"gutter": 7.0}
