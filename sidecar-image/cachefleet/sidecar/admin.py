"""The admin endpoint: Prometheus metrics, /shards, /healthz and /readyz over plain HTTP/1.1.

Metrics come from a collector that reads the sidecar's plain counters at scrape time, so the
request path never touches prometheus-client. Each Sidecar has its own registry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cachefleet.sidecar.hotkeys import hot_keys_report
from cachefleet.sidecar.pool import READY
from cachefleet.sidecar.stats import LATENCY_BUCKETS

if TYPE_CHECKING:
    from cachefleet.sidecar.app import Sidecar

log = logging.getLogger("cachefleet.sidecar.admin")

PREFIX = "cachefleet_sidecar"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def counter(
    name: str, text: str, labels: Sequence[str], rows: Iterable[tuple[Sequence[str], float]]
) -> CounterMetricFamily:
    """One counter family from (label values, count) rows."""
    family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=list(labels))
    for values, count in rows:
        family.add_metric(list(values), count)
    return family


def plain_counters(rows: Iterable[tuple[str, float, str]]) -> Iterator[Metric]:
    """Unlabelled counters from (name, value, help) rows."""
    for name, value, text in rows:
        family = CounterMetricFamily(f"{PREFIX}_{name}", text)
        family.add_metric([], value)
        yield family


class SidecarCollector(Collector):
    def __init__(self, app: Sidecar) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        stats = app.stats
        requests = CounterMetricFamily(
            f"{PREFIX}_requests", "Requests by command and shard (local: answered by the sidecar)",
            labels=["command", "shard"],
        )  # fmt: skip
        by_path = {"c": 0, "python": 0}
        for shard, shard_stats in stats.shards.items():
            counts: dict[str, int] = {}
            for path, table in (
                ("c", shard_stats.c_requests),
                ("python", shard_stats.python_requests),
            ):
                for spec, count in list(table.items()):
                    counts[spec.name] = counts.get(spec.name, 0) + count
                    by_path[path] += count
            for name, count in counts.items():
                requests.add_metric([name, shard], count)
        for spec, count in list(stats.local_requests.items()):
            requests.add_metric([spec.name, "local"], count)
            by_path["python"] += count
        yield requests

        paths = CounterMetricFamily(
            f"{PREFIX}_path_requests",
            "Requests by where their routing decision ran: c (the C loop's fast path) or python "
            "(the Python loop, multi-key commands, route units, local commands)",
            labels=["path"],
        )
        for path, count in by_path.items():
            paths.add_metric([path], count)
        yield paths

        yield counter(
            "route_requests",
            "Requests a route unit took instead of the fast path (gutter, hold, ...)",
            ["route"],
            (([route], count) for route, count in list(stats.routes.items())),
        )
        yield counter(
            "ejections", "Shard ejections by cause", ["shard", "cause"],
            (([shard, cause], count) for (shard, cause), count in list(stats.ejections.items())),
        )  # fmt: skip
        yield counter(
            "readmissions", "Ejected shards re-admitted after their clean-up", ["shard"],
            (([shard], count) for shard, count in list(stats.readmissions.items())),
        )  # fmt: skip
        yield from warmup_metrics(app)
        yield from hot_key_metrics(app)

        states = GaugeMetricFamily(
            f"{PREFIX}_shard_state", "1 for each shard's health state", labels=["shard", "state"]
        )
        for name, health in app.health.policy.shards.items():
            states.add_metric([name, str(health.state)], 1)
        yield states

        yield counter(
            "errors", "Requests answered with an error by the sidecar", ["kind"],
            (([kind], count) for kind, count in list(stats.errors.items())),
        )  # fmt: skip

        latency = HistogramMetricFamily(
            f"{PREFIX}_shard_latency_seconds",
            "Shard round trip, from the write of a batch to the reply to its last request",
            labels=["shard"],
        )
        for shard, shard_stats in stats.shards.items():
            hist = shard_stats.latency
            cumulative = 0
            buckets = []
            for bound, count in zip(
                [*(str(b) for b in LATENCY_BUCKETS), "+Inf"], hist.buckets, strict=True
            ):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([shard], buckets, hist.total)
        yield latency

        backends = GaugeMetricFamily(
            f"{PREFIX}_backend_connections",
            "Open connections to each shard, by protocol version",
            labels=["shard", "protocol"],
        )
        up = GaugeMetricFamily(
            f"{PREFIX}_shard_up", "1 when no connection to the shard is down", labels=["shard"]
        )
        for pool in [*app.pools.values(), *app.gutter.values()]:
            for protocol, conns in pool.conns.items():
                backends.add_metric(
                    [pool.name, str(protocol)], sum(1 for c in conns if c.state == READY)
                )
            down = any(c.down_reason and c.state != READY for c in pool.connections())
            up.add_metric([pool.name], 0 if down else 1)
        yield backends
        yield up

        clients = GaugeMetricFamily(f"{PREFIX}_client_connections", "Open client connections")
        clients.add_metric([], stats.client_connections)
        yield clients
        accepted = CounterMetricFamily(
            f"{PREFIX}_client_connections_accepted", "Client connections accepted"
        )
        accepted.add_metric([], stats.client_connections_total)
        yield accepted

        config = GaugeMetricFamily(
            f"{PREFIX}_config_info", "The config version being served", labels=["version"]
        )
        config.add_metric([stats.config_version], 1)
        yield config
        reloads = CounterMetricFamily(
            f"{PREFIX}_config_reloads", "Config file reloads", labels=["result"]
        )
        reloads.add_metric(["applied"], stats.config_reloads)
        reloads.add_metric(["rejected"], stats.config_reload_failures)
        yield reloads


def hot_keys_document(app: Sidecar) -> dict[str, object]:
    """``/hotkeys``: every tracked key, its rate, whether it is hot and whether it is in L1."""
    tracker = app.hot_keys
    if tracker is None:
        return {"enabled": False, "keys": []}
    entries = app.l1.entries if app.l1 is not None else {}
    return {"enabled": True, "l1": app.l1 is not None, **hot_keys_report(tracker, entries)}


def hot_key_metrics(app: Sidecar) -> Iterator[Metric]:
    tracker = app.hot_keys
    hot = GaugeMetricFamily(f"{PREFIX}_hot_keys", "Keys hot at this sidecar now")
    hot.add_metric([], len(tracker.hot_keys()) if tracker is not None else 0)
    yield hot
    l1 = app.l1
    if l1 is None:
        return
    native_hits = app.l1_hits_before + (app.routes.native.l1_hits if app.routes.native else 0)
    stats = l1.stats
    entries = GaugeMetricFamily(f"{PREFIX}_l1_entries", "Values held in L1")
    entries.add_metric([], len(l1.entries))
    yield entries
    yield from plain_counters(
        [
            ("l1_hits", stats.hits + native_hits, "GETs of hot keys answered from L1"),
            ("l1_misses", stats.misses, "GETs of hot keys L1 did not hold (fetched and filled)"),
            ("l1_fills", stats.fills, "Values stored in L1"),
            ("l1_evictions", stats.evictions, "L1 entries dropped to make room"),
            ("l1_flushes", stats.flushes, "Times a shard's L1 entries were dropped at once"),
        ]
    )
    yield counter(
        "l1_invalidations",
        "L1 entries dropped, by source: push (the shard said the key changed), write (through "
        "this sidecar), cooled (no longer hot)",
        ["source"],
        (([source], count) for source, count in list(stats.invalidations.items())),
    )


def warmup_metrics(app: Sidecar) -> Iterator[Metric]:
    """What the shadow and grace routes did during the current capacity change."""
    warm = app.warmup_stats
    section = app.config.warmup
    info = GaugeMetricFamily(
        f"{PREFIX}_warmup_info",
        "The capacity change in progress (1), by change id, phase and shadow percentage",
        labels=["change", "phase", "percent"],
    )
    if section is not None:
        info.add_metric([section.change_id, section.phase, f"{section.shadow_percent:g}"], 1)
    yield info
    yield counter(
        "warmup_shadowed",
        "Shadow work sent to warming owners: read, mirror, invalidate, grace_delete",
        ["kind"],
        (([kind], count) for kind, count in list(warm.shadowed.items())),
    )
    yield counter(
        "warmup_reads",
        "Shadowed reads of moved keys that the active owner hit, by whether the warming owner "
        "hit too",
        ["shard", "result"],
        (
            ([shard, result], count)
            for result, table in (("hit", warm.hits), ("miss", warm.misses))
            for shard, count in list(table.items())
        ),
    )
    ratio = GaugeMetricFamily(
        f"{PREFIX}_warmup_hit_ratio", "The warming owners' hit ratio on moved keys, so far"
    )
    measured = warm.hit_ratio()
    if measured is not None:
        ratio.add_metric([], measured)
    yield ratio
    yield counter(
        "warmup_fallback",
        "Grace-phase reads that missed on the new owner and went to the previous one",
        ["result"],
        [(["hit"], warm.fallback_hits), (["miss"], warm.fallback_misses)],
    )
    yield from plain_counters(
        [
            ("warmup_copies", warm.copies, "Values copied to a warming owner after its miss"),
            ("warmup_fills", warm.fills, "Values filled into a new owner after a fallback hit"),
            (
                "warmup_dropped",
                warm.dropped,
                "Shadow work not sent: the warming connection was full or down",
            ),
        ]
    )


def build_registry(app: Sidecar) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(app))
    return registry


class AdminServer:
    def __init__(self, app: Sidecar) -> None:
        self.app = app
        self.registry = build_registry(app)
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, host, port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def respond(self, path: str) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE, generate_latest(self.registry)
        if path == "/hotkeys":
            body = json.dumps(hot_keys_document(self.app), indent=2).encode() + b"\n"
            return 200, "application/json", body
        if path == "/shards":
            body = json.dumps(self.app.health.report(), indent=2).encode() + b"\n"
            return 200, "application/json", body
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            if self.app.ready:
                return 200, "text/plain", b"ready\n"
            return 503, "text/plain", b"not ready\n"
        return 404, "text/plain", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
                status, ctype, body = 405, "text/plain", b"only GET\n"
            else:
                status, ctype, body = self.respond(parts[1].decode("latin-1"))
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}.get(
                status, "Service Unavailable"
            )
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (body if parts[:1] != [b"HEAD"] else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except Exception:  # a scrape must never take the sidecar down
            log.exception("admin request failed")
        finally:
            writer.close()
