"""What one failover scenario shows, from what was observed during it (plain data in, a JSON-able
dict out): the error window, failures, throughput, stale reads, the other shards' load, the
proxy's CPU and routing, and the verdict on each target.

Phases (times from ``Timeline``): *before* = [start, fault); *during* = [fault, restore), the
outage; *steady* = [fault + settle, restore), the outage once the proxy has reacted, used for
the load comparison; *recovering* = [restore, back), until the shard serves its keys again;
*after* = [back, end).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.failover_accounting import (
    BAD_READS,
    CounterSample,
    ReadVerdict,
    ShardLoad,
    bins,
    bins_within,
    count_between,
    error_window,
    halves,
    load_of,
    noise_bound,
    per_second,
    percentile,
    relative_change,
)
from bench.failover_load import Record

GUTTER = "gutter"


@dataclass
class Timeline:
    start: float = 0.0  # the measured load starts (after preload and a warm-up)
    fault: float = 0.0
    restore: float = 0.0  # the restart or SIGCONT begins
    restored: float = 0.0  # the shard answers again (restart) or SIGCONT was sent
    back: float | None = None  # the proxy sends the shard its keys again
    end: float = 0.0


@dataclass(frozen=True)
class ProxySnapshot:
    """The proxy process at a phase boundary: its CPU time and (the sidecar) its counters."""

    label: str
    at: float
    cpu: float
    counters: dict[str, float]


@dataclass
class Observed:
    proxy: str  # sidecar, twemproxy
    fault: str  # kill, stop
    victim: str  # the failed shard's name in the proxy's config
    victim_server: str  # its name among ``samples``
    timeline: Timeline
    record: Record
    samples: dict[str, list[CounterSample]]  # by server: shard-N, gutter
    states: list[tuple[float, str]]  # the sidecar's view of the victim
    snapshots: list[ProxySnapshot]
    proxy_stats: dict[str, Any]  # twemproxy's own counters


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def phases(t: Timeline) -> dict[str, tuple[float, float]]:
    after_start = t.back if t.back is not None else t.restored
    return {
        "before": (t.start, t.fault),
        "during": (t.fault, t.restore),
        "recovering": (t.restore, after_start),
        "after": (after_start, t.end),
    }


def throughput(o: Observed) -> dict[str, Any]:
    out: dict[str, Any] = {}
    failed_at = sorted(t for t, _, _ in o.record.failures)
    for name, (start, end) in phases(o.timeline).items():
        latencies = [seconds for done, seconds in o.record.latencies if start <= done < end]
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        out[name] = {
            "seconds": rounded(end - start),
            "ok_per_second": round(per_second(o.record.succeeded, start, end)),
            "failed": count_between(failed_at, start, end),
            "p50_ms": rounded(None if p50 is None else p50 * 1000),
            "p99_ms": rounded(None if p99 is None else p99 * 1000),
        }
    return out


def reads(o: Observed) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (start, end) in phases(o.timeline).items():
        tally = Counter(verdict for t, verdict in o.record.reads if start <= t < end)
        out[name] = {str(v): tally.get(v, 0) for v in ReadVerdict}
    bad = [t for t, verdict in o.record.reads if verdict in BAD_READS]
    out["stale_total"] = len(bad)
    out["stale_after_restore"] = len([t for t in bad if t >= o.timeline.restore])
    out["examples"] = [
        {**example, "at": rounded(example["at"] - o.timeline.fault)}
        for example in o.record.bad_reads
    ]
    return out


def failures(o: Observed) -> dict[str, Any]:
    """Failed requests: in the outage (fault to the shard answering again) and after it."""
    t = o.timeline
    times = [done for done, _, _ in o.record.failures]
    after = [(op, kind) for done, op, kind in o.record.failures if done >= t.restored]
    return {
        "total": len(times),
        "before_fault": len([x for x in times if x < t.fault]),
        "during_outage": len([x for x in times if t.fault <= x < t.restored]),
        "after_restored": len(after),
        "by_kind": dict(Counter(kind for _, _, kind in o.record.failures).most_common()),
        "by_op": dict(Counter(op for _, op, _ in o.record.failures)),
        "after_restored_by_kind": dict(Counter(kind for _, kind in after).most_common()),
        "first_s": rounded(min((x - t.fault for x in times if x >= t.fault), default=None)),
        "last_s": rounded(max((x - t.fault for x in times), default=None)),
    }


def shard_loads(o: Observed, settle: float) -> dict[str, Any]:
    """Each surviving server's share of the offered load in the steady outage against before;
    the noise bound from the two halves of the before stretch, over all four shards."""
    t = o.timeline
    sent = o.record.sent
    by_server = {name: bins(samples) for name, samples in o.samples.items()}
    half_changes = []
    for name, server_bins in by_server.items():
        if name == GUTTER:
            continue
        first, second = halves(bins_within(server_bins, t.start, t.fault))
        change = relative_change(load_of(first, sent).share, load_of(second, sent).share)
        if change is not None:
            half_changes.append(change)
    bound = noise_bound(half_changes)
    servers: dict[str, Any] = {}
    for name, server_bins in by_server.items():
        if name == o.victim_server:
            continue
        before = load_of(bins_within(server_bins, t.start, t.fault), sent)
        steady = load_of(bins_within(server_bins, t.fault + settle, t.restore), sent)
        servers[name] = load_figures(before, steady, None if name == GUTTER else bound)
    neighbours = [figures for name, figures in servers.items() if name != GUTTER]
    changes = [n["share_change"] or 0.0 for n in neighbours]
    return {
        "noise_bound": round(bound, 4),
        "half_to_half_changes": [round(c, 4) for c in half_changes],
        "servers": servers,
        "neighbours_unchanged": all(n["within_noise"] for n in neighbours),
        "neighbours_largest_change": round(max(changes, key=abs, default=0.0), 4),
    }


def load_figures(before: ShardLoad, steady: ShardLoad, bound: float | None) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "ops_per_second_before": round(before.per_second),
        "ops_per_second_during": round(steady.per_second),
        "share_before": round(before.share, 4),
        "share_during": round(steady.share, 4),
    }
    if bound is not None:  # a shard: did its share move? (the gutter's is meant to)
        change = relative_change(before.share, steady.share)
        figures["share_change"] = rounded(change, 4)
        figures["within_noise"] = change is not None and abs(change) <= bound
    return figures


def proxy_process(o: Observed) -> dict[str, Any]:
    """Between consecutive snapshots: the proxy's CPU time per request, and (the sidecar) where
    its routing decisions ran and which route units took requests."""
    done = sorted([*o.record.succeeded, *(t for t, _, _ in o.record.failures)])
    out: dict[str, Any] = {}
    for a, b in itertools.pairwise(o.snapshots):
        requests = count_between(done, a.at, b.at)
        cpu = (b.cpu - a.cpu) / requests * 1e6 if requests else None
        figures: dict[str, Any] = {"requests": requests, "cpu_us_per_request": rounded(cpu, 1)}
        for name in sorted(set(a.counters) | set(b.counters)):
            delta = b.counters.get(name, 0.0) - a.counters.get(name, 0.0)
            if delta:
                figures[name] = int(delta)
        out[f"{a.label}-{b.label}"] = figures
    return out


def sidecar_states(o: Observed) -> dict[str, Any]:
    t = o.timeline
    out = next((at for at, state in o.states if at >= t.fault and state != "healthy"), None)
    healthy = next((at for at, state in o.states if at >= t.restore and state == "healthy"), None)
    return {
        "changes": [[rounded(at - t.fault), state] for at, state in o.states],
        "out_of_ring_after_s": rounded(None if out is None else out - t.fault),
        "healthy_after_restore_s": rounded(None if healthy is None else healthy - t.restored),
    }


def analyse(o: Observed, settle: float) -> dict[str, Any]:
    t = o.timeline
    window = error_window(t.fault, [done for done, _, _ in o.record.failures], t.restored)
    result: dict[str, Any] = {
        "proxy": o.proxy,
        "fault": o.fault,
        "victim": o.victim,
        "timeline_s": {
            "fault": 0.0,
            "restore": rounded(t.restore - t.fault),
            "restored": rounded(t.restored - t.fault),
            "back_in_service": rounded(None if t.back is None else t.back - t.fault),
            "end": rounded(t.end - t.fault),
        },
        "back_after_restore_s": rounded(None if t.back is None else t.back - t.restored),
        "error_window_s": round(window, 3),
        "failures": failures(o),
        "throughput": throughput(o),
        "reads": reads(o),
        "loads": shard_loads(o, settle),
        "proxy_process": proxy_process(o),
        "missed_ticks": o.record.missed_ticks,
        "requests_sent": len(o.record.sent),
    }
    if o.states:
        result["sidecar_states"] = sidecar_states(o)
    if o.proxy_stats:
        result["twemproxy_stats"] = o.proxy_stats
    return result


def targets(result: dict[str, Any], request_timeout_s: float) -> dict[str, Any]:
    """The issue's targets for the sidecar: the error window, stale reads, the neighbours."""
    window_limit = 0.25 if result["fault"] == "kill" else request_timeout_s + 0.5
    loads = result["loads"]
    return {
        "error_window": {"limit_s": window_limit, "met": result["error_window_s"] <= window_limit},
        "stale_reads": {"limit": 0, "met": result["reads"]["stale_total"] == 0},
        "neighbours_load": {
            "limit": loads["noise_bound"],
            "largest_change": loads["neighbours_largest_change"],
            "met": loads["neighbours_unchanged"],
        },
    }


def summary_line(results: list[dict[str, Any]]) -> str:
    parts = []
    for r in results:
        loads, rates = r["loads"], r["throughput"]
        part = (
            f"{r['proxy']} {r['fault']}: window {r['error_window_s']:.3f} s, "
            f"{r['failures']['total']} failed "
            f"({r['failures']['after_restored']} after the shard was back), "
            f"stale {r['reads']['stale_total']}, "
            f"neighbours {loads['neighbours_largest_change']:+.1%} "
            f"(noise ±{loads['noise_bound']:.0%}), "
            f"{rates['before']['ok_per_second']}/{rates['during']['ok_per_second']}/"
            f"{rates['after']['ok_per_second']} req/s"
        )
        if "targets" in r:
            missed = [name for name, target in r["targets"].items() if not target["met"]]
            part += " [targets met]" if not missed else f" [MISSED: {', '.join(missed)}]"
        parts.append(part)
    return "failover bench: " + "; ".join(parts)
