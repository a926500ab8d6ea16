"""``cachefleet demo``: the product doing its job on this machine, in about a minute and a half.

A CacheCluster of four shards and a gutter server runs through ``LocalFleet`` (the operator's
own reconcile, real redis-server processes, the real sidecar) under a read-through application
(``traffic``). Four acts, each with what was measured:

1. steady traffic: requests, hit ratio, database loads per second;
2. a celebrity key: detected by the sidecar and served from its L1, so its shard's load falls;
3. a shard killed: its keys served by the gutter, then the shard back with no stale read;
4. 4 → 5 shards, warmed up before the cut-over, with the database load against a second fleet
   that cuts over at once; both curves in a PNG chart.

Ctrl-C or SIGTERM stops every process it started.
"""

from __future__ import annotations

import json
import queue
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import redis

from cachefleet_operator.local.fleet import LocalFleet
from cachefleet_operator.local.processes import answers_ping, free_port
from cachefleet_operator.local.stopping import Stop, StopSignal, stop_on_signals
from cachefleet_operator.local.traffic import CELEBRITY, Traffic

BIN_SECONDS = 1.0
SMOOTH = 3


@dataclass(frozen=True)
class Timing:
    steady: float = 8.0
    celebrity: float = 8.0
    outage: float = 6.0
    before_change: float = 13.0  # both fleets steady; the 10 s before the change is the baseline
    # The change's first look at the sidecars' reports waits 10 s for the heartbeat hash to
    # settle (a hash the operator has not watched yet may have just been emptied); then the
    # sweep, the ramp and the hit ratio take about 20 s more (25 s at the quick rate).
    after_change: float = 45.0
    rate: float = 800.0


QUICK = Timing(
    steady=4.0, celebrity=5.0, outage=3.0, before_change=12.0, after_change=50.0, rate=500.0
)


def manifest(name: str, warm: bool, quick: bool) -> dict[str, Any]:
    return {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "CacheCluster",
        "metadata": {"name": name},
        "spec": {
            "shards": 4,
            "gutter": {"enabled": True, "size": 1, "ttlSeconds": 10},
            "warmUp": {
                "enabled": warm,
                "steps": [20, 100],
                "stepSeconds": 1 if quick else 2,
                "cutoverHitRatio": 0.9,
                "graceSeconds": 5 if quick else 10,
                "timeoutSeconds": 600,
            },
            "sidecar": {
                "health": {"checkIntervalMs": 200},
                "hotKeys": {"enabled": True, "thresholdPerSecond": 150},
                "l1": {"enabled": True, "ttlMs": 2000},
            },
        },
    }


class Operator:
    """A fleet's reconcile loop in a thread; other threads hand it work through ``call``."""

    def __init__(self, fleet: LocalFleet) -> None:
        self.fleet = fleet
        self.stop = threading.Event()
        self.work: queue.Queue[Callable[[], None]] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"operator {fleet.name}", daemon=True)
        self.failure: BaseException | None = None

    def _run(self) -> None:
        try:
            self.fleet.run(self.stop.is_set, 3600, self._tick)
        except BaseException as error:  # shown by the demo, never a silent thread death
            self.failure = error

    def _tick(self) -> None:
        while True:
            try:
                job = self.work.get_nowait()
            except queue.Empty:
                return
            job()

    def call(self, job: Callable[[], None]) -> None:
        self.work.put(job)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def admin(fleet: LocalFleet, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet.admin_port}{path}", timeout=2) as r:
        body = r.read()
    return json.loads(body) if path != "/metrics" else body.decode()


def metric(fleet: LocalFleet, name: str) -> float:
    for line in str(admin(fleet, "/metrics")).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def get_calls(fleet: LocalFleet, member: str) -> int:
    process = fleet.redis[member]
    client = redis.Redis(port=process.port, password=fleet.password)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def wait(stop: StopSignal, seconds: float, *operators: Operator) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stop.check()
        for operator in operators:
            if operator.failure is not None:
                raise RuntimeError(f"the operator loop failed: {operator.failure!r}")
        time.sleep(0.1)


def until(stop: StopSignal, check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        stop.check()
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def rates(times: list[float], start: float, end: float) -> list[float]:
    bins = [0] * max(1, int((end - start) / BIN_SECONDS))
    for t in times:
        index = int((t - start) // BIN_SECONDS)
        if 0 <= index < len(bins):
            bins[index] += 1
    counts = [b / BIN_SECONDS for b in bins]
    return [
        sum(counts[max(0, i - SMOOTH + 1) : i + 1]) / len(counts[max(0, i - SMOOTH + 1) : i + 1])
        for i in range(len(counts))
    ]


def run_demo(directory: Path | None, quick: bool, out: TextIO = sys.stdout) -> int:
    timing = QUICK if quick else Timing()
    scratch = directory or Path(tempfile.mkdtemp(prefix="cachefleet-demo-"))
    scratch.mkdir(parents=True, exist_ok=True)
    chart_path = scratch / "demo.png"

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    fleets: list[LocalFleet] = []
    operators: list[Operator] = []
    traffics: list[Traffic] = []
    started = time.monotonic()

    def launch(
        stop: StopSignal, name: str, warm: bool, seed: int
    ) -> tuple[LocalFleet, Operator, Traffic]:
        """A fleet at Stable, its operator loop and its traffic, each stopped at the end."""
        fleet = LocalFleet(
            manifest(name, warm, quick),
            scratch / name,
            sidecar_port=free_port(),
            admin_port=free_port(),
        )
        fleets.append(fleet)
        fleet.start()

        def ready() -> bool:
            stop.check()
            return fleet.sidecar is not None and fleet.phase == "Stable"

        fleet.run(ready, 60)
        operator = Operator(fleet)
        operators.append(operator)
        operator.start()
        traffic = Traffic(fleet.sidecar_port, rate=timing.rate, seed=seed)
        traffics.append(traffic)
        traffic.start()
        return fleet, operator, traffic

    with stop_on_signals() as stop:
        try:
            main, operator, traffic = launch(stop, "demo", True, seed=3)
            say(
                f"cachefleet demo: 4 shards and a gutter server, sidecar on "
                f"127.0.0.1:{main.sidecar_port}, the operator's own reconcile driving them"
            )

            # Act 1: steady traffic.
            act = time.monotonic()
            wait(stop, timing.steady, operator)
            reads, misses, errors, stale = traffic.counters.since(act)
            seconds = time.monotonic() - act
            base_loads = sum(1 for t in traffic.counters.loads if t >= act) / seconds
            say(
                f"1. steady traffic: {reads / seconds:,.0f} reads/s, hit ratio "
                f"{1 - misses / max(reads, 1):.1%}, {base_loads:,.0f} database loads/s, "
                f"{errors} errors, {stale} stale reads"
            )

            # Act 2: a celebrity.
            home = main.status_ring().shard_for(CELEBRITY)
            before_calls, before_at = get_calls(main, home), time.monotonic()
            wait(stop, 2.0, operator)
            normal = (get_calls(main, home) - before_calls) / (time.monotonic() - before_at)
            hits_before = metric(main, "cachefleet_sidecar_l1_hits_total")
            traffic.celebrity_share = 0.5
            act = time.monotonic()
            reads_at = traffic.counters.celebrity_reads
            detected = until(
                stop,
                lambda: metric(main, "cachefleet_sidecar_l1_hits_total") > hits_before,
                10,
                "the celebrity served from L1",
            )
            calls, calls_at = get_calls(main, home), time.monotonic()
            wait(stop, timing.celebrity, operator)
            during = (get_calls(main, home) - calls) / (time.monotonic() - calls_at)
            celebrity_rate = (traffic.counters.celebrity_reads - reads_at) / (
                time.monotonic() - act
            )
            served = metric(main, "cachefleet_sidecar_l1_hits_total") - hits_before
            traffic.celebrity_share = 0.0
            say(
                f"2. a celebrity key: {celebrity_rate:,.0f} reads/s of {CELEBRITY.decode()!r}, "
                f"hot and served from L1 {detected * 1000:.0f} ms after it started "
                f"({served:,.0f} L1 hits); its shard ({home}) answered {during:,.0f} GET/s "
                f"against {normal:,.0f} before: without L1 it would have taken "
                f"{during + celebrity_rate:,.0f}"
            )

            # Act 3: a shard killed.
            victim = next(m for m in sorted(main.redis) if m.startswith("shard") and m != home)
            act = time.monotonic()
            killed: list[float] = []  # when the operator's thread actually killed it

            def kill() -> None:
                main.kill(victim)
                killed.append(time.monotonic())

            operator.call(kill)
            until(stop, lambda: bool(killed), 10, "the kill")
            until(stop, lambda: shard_state(main, victim) == "ejected", 10, "ejected")
            ejected = time.monotonic() - killed[0]
            wait(stop, timing.outage, operator)
            gutter_ops = metric_sum(main, 'cachefleet_sidecar_route_requests_total{route="gutter"}')
            operator.call(lambda: main.release(victim))
            until(stop, lambda: answers(main, victim), 30, "the shard's restart")
            back = time.monotonic()
            healthy = until(stop, lambda: shard_state(main, victim) == "healthy", 30, "re-admitted")
            wait(stop, 2.0, operator)
            reads, misses, errors, stale = traffic.counters.since(act)
            say(
                f"3. {victim} killed: ejected after {ejected * 1000:.0f} ms, its keys served by "
                f"the gutter ({gutter_ops:,.0f} requests), {errors} failed requests; "
                f"restarted after {back - killed[0]:.1f} s down and re-admitted "
                f"{healthy:.1f} s later; {stale} stale reads since the kill"
            )

            # Act 4: 4 -> 5 shards, warmed up, against an immediate cut-over.
            # The same keys cached in both (shard-0 came back empty), so the two curves start
            # from the same steady load.
            traffic.refill()
            other, other_operator, other_traffic = launch(stop, "immediate", False, seed=4)
            wait(stop, timing.before_change, operator, other_operator)
            change = time.monotonic()
            operator.call(lambda: main.scale(5))
            other_operator.call(lambda: other.scale(5))
            until(
                stop,
                lambda: (
                    (main.phase == "Stable" and main.status.get("shards") == 5)
                    or time.monotonic() - change > timing.after_change
                ),
                120,
                "the warm-up",
            )
            remaining = timing.after_change - (time.monotonic() - change)
            wait(stop, max(remaining, 0.0), operator, other_operator)
            end = time.monotonic()
            curves = {
                "warm-up": rates(traffic.counters.loads, change - 10, end),
                "immediate cut-over": rates(other_traffic.counters.loads, change - 10, end),
            }
            summary = {way: peak_over_baseline(curve) for way, curve in curves.items()}
            warm_stale = traffic.counters.since(change)[3]
            cutover = next((e.message for e in main.events if e.reason == "CutOver"), "no cut-over")
            say(
                f"4. 4 → 5 shards: with the warm-up the database peaked at "
                f"{summary['warm-up']:.2f}x its steady load ({cutover}); with an immediate "
                f"cut-over at {summary['immediate cut-over']:.2f}x; {warm_stale} stale reads"
            )
            draw(curves, chart_path)
            say(f"chart: {chart_path}")
            say(f"done in {time.monotonic() - started:.0f} s; stopping everything")
        except Stop:
            say("interrupted: stopping everything")
        finally:
            for traffic_ in traffics:
                traffic_.stop()
            for operator_ in operators:
                operator_.close()
            for fleet in fleets:
                fleet.stop()
    say("stopped: no process of the demo is left")
    return 0


def answers(fleet: LocalFleet, member: str) -> bool:
    """Whether the member's redis-server is up (after a restart) and answers PING."""
    process = fleet.redis.get(member)
    return process is not None and process.alive() and answers_ping(process.port, fleet.password)


def shard_state(fleet: LocalFleet, member: str) -> str:
    try:
        shards = admin(fleet, "/shards")["shards"]
    except OSError:
        return ""
    return next((s["state"] for s in shards if s["name"] == member), "")


def metric_sum(fleet: LocalFleet, line_prefix: str) -> float:
    return sum(
        float(line.split()[-1])
        for line in str(admin(fleet, "/metrics")).splitlines()
        if line.startswith(line_prefix)
    )


def peak_over_baseline(curve: list[float]) -> float:
    """The highest point after the change over the mean of the 10 s before it."""
    before, after = curve[: int(10 / BIN_SECONDS)], curve[int(10 / BIN_SECONDS) :]
    baseline = sum(before[SMOOTH:]) / max(1, len(before[SMOOTH:]))
    return max(after, default=0.0) / baseline if baseline else 0.0


def draw(curves: dict[str, list[float]], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("(no chart: matplotlib is not installed; pip install 'cachefleet[sim]')")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    for way, curve in curves.items():
        axes.plot([i * BIN_SECONDS - 10 for i in range(len(curve))], curve, label=way)
    axes.axvline(0, color="grey", linestyle="--", label="4 → 5 shards asked")
    axes.set_xlabel("seconds since the change was asked for")
    axes.set_ylabel(f"database loads / s ({SMOOTH} s average)")
    axes.set_title("cachefleet demo: database load during a 4 → 5 shard change")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
