"""The model's inputs: one knob per slider, with its range, its default and where it comes from.

The knobs are the single description of the inputs: the page builds its sliders from them, the
command line validates ``--set NAME=VALUE`` against them, and ``Params`` holds one value each.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from cachefleet.config.schema import GutterConfig, HotKeysConfig, L1Config, PoolConfig
from cachefleet.sim.calibration import figure

# Shard counts the page offers. The ring figures are computed for each of them with the real
# ring code when the page is written, so the slider picks from a list rather than any integer.
SHARD_CHOICES: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 100, 128)
RESIZE_RANGE: tuple[int, int] = (1, 12)

# The operator's warm-up ramp (CacheCluster spec.warmUp.steps). The operator package is the
# control plane, which the data plane must not import; tests/sim pins these to its defaults.
WARMUP_STEPS_PERCENT: tuple[float, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)
WARMUP_STEP_SECONDS = 60
WARMUP_CUTOVER_HIT_RATIO = 0.9
WARMUP_TIMEOUT_SECONDS = 1800
WARMUP_GRACE_SECONDS = 300


@dataclass(frozen=True)
class Knob:
    """A model input as the page shows it: a slider, or a choice among ``choices``."""

    name: str
    label: str
    unit: str
    default: float
    minimum: float
    maximum: float
    step: float
    source: str  # where the default comes from, shown beside the slider
    group: str
    log_scale: bool = False
    choices: tuple[float, ...] = ()


ASSUMED = "assumption: an example fleet, change it"

# The sidecar ejects a killed shard as soon as a request or health check is refused; a hung one
# only once requests time out, so that figure is offered beside the default rather than as it.
DETECTION_SOURCE = (
    f"bench/failover.py: a killed shard out of the ring in {figure('sidecar_eject_ms'):g} ms; "
    f"a hung one (SIGSTOP) gave {figure('sidecar_stop_error_window_s'):g} s of errors, "
    f"twemproxy {figure('twemproxy_kill_error_window_s'):g} s after a kill"
)

KNOBS: tuple[Knob, ...] = (
    # The fleet and its load.
    Knob("app_pods", "app pods (each with a sidecar)", "", 1000, 10, 10_000, 10, ASSUMED,
         "fleet", log_scale=True),
    Knob("workers_per_pod", "app processes per pod", "", 4, 1, 64, 1, ASSUMED, "fleet"),
    Knob("pool_per_worker", "connections each app process keeps per cache node", "", 1, 1, 16,
         1, ASSUMED, "fleet"),
    Knob("shards", "cache nodes (shards)", "", 100, 2, 128, 1,
         "the issue's example: 1,000 app nodes × 100 cache nodes", "fleet",
         choices=tuple(float(n) for n in SHARD_CHOICES)),
    Knob("connections_per_shard", "sidecar connections per shard", "",
         PoolConfig().connections_per_shard, 1, 8, 1,
         "sidecar config default (pool.connectionsPerShard)", "fleet"),
    Knob("request_rate", "cache reads, whole fleet", "requests/s", 1_000_000, 10_000,
         20_000_000, 10_000, ASSUMED, "fleet", log_scale=True),
    Knob("pipeline", "pipeline depth", "", 1, 1, 16, 15,
         "the two depths bench/sidecar.py measures", "fleet", choices=(1.0, 16.0)),
    Knob("network_rtt_us", "network round trip to a cache node", "µs", 200, 20, 2000, 10,
         "assumption: one zone of a data centre", "fleet", log_scale=True),
    # The keys.
    Knob("keys", "distinct keys", "", 10_000_000, 10_000, 1_000_000_000, 10_000, ASSUMED,
         "keys", log_scale=True),
    Knob("zipf_s", "popularity skew (Zipf exponent)", "", 0.9, 0.5, 1.5, 0.01, ASSUMED, "keys"),
    Knob("key_ttl_s", "TTL the app sets on cached values", "s", 300, 10, 86_400, 10, ASSUMED,
         "keys", log_scale=True),
    Knob("write_ratio", "writes per read", "", 0.05, 0, 1, 0.01, ASSUMED, "keys"),
    # A node failure.
    Knob("outage_s", "outage length", "s", 60, 5, 600, 5, ASSUMED, "failure"),
    Knob("detection_s", "time to detect the failure", "s", figure("sidecar_eject_ms") / 1000,
         0.001, 10, 0.001, DETECTION_SOURCE, "failure", log_scale=True),
    Knob("gutter_ttl_s", "gutter TTL", "s", GutterConfig().ttl_seconds, 1, 3600, 1,
         "sidecar config default (gutter.ttlSeconds)", "failure", log_scale=True),
    Knob("gutter_size", "gutter servers", "", 1, 1, 16, 1,
         "CacheCluster default (spec.gutter.size)", "failure"),
    Knob("returns_with_data", "the shard comes back with its old data (hung, not restarted)", "",
         0, 0, 1, 1, "a restart (empty) by default", "failure", choices=(0.0, 1.0)),
    # A celebrity key.
    Knob("celebrity_rate", "celebrity key's reads, whole fleet", "requests/s", 200_000, 0,
         5_000_000, 1000, ASSUMED, "celebrity"),
    Knob("celebrity_writes", "celebrity key's writes, whole fleet", "writes/s", 1, 0, 1000, 1,
         ASSUMED, "celebrity"),
    Knob("hot_threshold", "hot-key threshold per sidecar", "requests/s",
         HotKeysConfig().threshold_per_second, 1, 100_000, 1,
         "sidecar config default (hotKeys.thresholdPerSecond)", "celebrity", log_scale=True),
    Knob("l1_ttl_ms", "L1 TTL", "ms", L1Config().ttl_ms, 1, 60_000, 1,
         "sidecar config default (l1.ttlMs)", "celebrity", log_scale=True),
    # A capacity change.
    Knob("resize_from", "shards before the change", "", 4, RESIZE_RANGE[0], RESIZE_RANGE[1], 1,
         "the issue's 4 → 5", "capacity"),
    Knob("resize_to", "shards after the change", "", 5, RESIZE_RANGE[0], RESIZE_RANGE[1], 1,
         "the issue's 4 → 5", "capacity"),
    Knob("step_seconds", "seconds per warm-up step", "s", WARMUP_STEP_SECONDS, 1, 600, 1,
         "CacheCluster default (spec.warmUp.stepSeconds)", "capacity"),
    Knob("cutover_hit_ratio", "cut over at this warm hit ratio", "", WARMUP_CUTOVER_HIT_RATIO,
         0.5, 1, 0.01, "CacheCluster default (spec.warmUp.cutoverHitRatio)", "capacity"),
    Knob("warmup_timeout_s", "warm-up timeout", "s", WARMUP_TIMEOUT_SECONDS, 60, 7200, 60,
         "CacheCluster default (spec.warmUp.timeoutSeconds)", "capacity"),
    Knob("grace_s", "grace: old ring as read fallback", "s", WARMUP_GRACE_SECONDS, 0, 3600, 10,
         "CacheCluster default (spec.warmUp.graceSeconds)", "capacity"),
)  # fmt: skip

KNOB = {knob.name: knob for knob in KNOBS}


@dataclass(frozen=True)
class Params:
    """One value per knob (``tests/sim`` checks the names match). Counts are floats too: the
    page's model works in JavaScript numbers, and both sides must compute the same."""

    app_pods: float = KNOB["app_pods"].default
    workers_per_pod: float = KNOB["workers_per_pod"].default
    pool_per_worker: float = KNOB["pool_per_worker"].default
    shards: float = KNOB["shards"].default
    connections_per_shard: float = KNOB["connections_per_shard"].default
    request_rate: float = KNOB["request_rate"].default
    pipeline: float = KNOB["pipeline"].default
    network_rtt_us: float = KNOB["network_rtt_us"].default
    keys: float = KNOB["keys"].default
    zipf_s: float = KNOB["zipf_s"].default
    key_ttl_s: float = KNOB["key_ttl_s"].default
    write_ratio: float = KNOB["write_ratio"].default
    outage_s: float = KNOB["outage_s"].default
    detection_s: float = KNOB["detection_s"].default
    gutter_ttl_s: float = KNOB["gutter_ttl_s"].default
    gutter_size: float = KNOB["gutter_size"].default
    returns_with_data: float = KNOB["returns_with_data"].default
    celebrity_rate: float = KNOB["celebrity_rate"].default
    celebrity_writes: float = KNOB["celebrity_writes"].default
    hot_threshold: float = KNOB["hot_threshold"].default
    l1_ttl_ms: float = KNOB["l1_ttl_ms"].default
    resize_from: float = KNOB["resize_from"].default
    resize_to: float = KNOB["resize_to"].default
    step_seconds: float = KNOB["step_seconds"].default
    cutover_hit_ratio: float = KNOB["cutover_hit_ratio"].default
    warmup_timeout_s: float = KNOB["warmup_timeout_s"].default
    grace_s: float = KNOB["grace_s"].default

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def check_value(knob: Knob, value: float) -> float:
    """The value if the knob accepts it, else ValueError saying what it accepts."""
    if not math.isfinite(value):
        raise ValueError(f"{knob.name}: {value} is not a finite number")
    if knob.choices:
        if value not in knob.choices:
            allowed = ", ".join(f"{choice:g}" for choice in knob.choices)
            raise ValueError(f"{knob.name}={value:g}: choose one of {allowed}")
    elif not knob.minimum <= value <= knob.maximum:
        raise ValueError(
            f"{knob.name}={value:g}: must be between {knob.minimum:g} and {knob.maximum:g}"
        )
    return value


def params_with(overrides: Mapping[str, str], base: Params | None = None) -> Params:
    """``base`` (the defaults) with NAME=VALUE overrides, each checked against its knob."""
    values = (base or Params()).as_dict()
    for name, text in overrides.items():
        knob = KNOB.get(name)
        if knob is None:
            raise ValueError(f"unknown parameter {name!r}; known: {', '.join(KNOB)}")
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{name}={text!r}: not a number") from None
        values[name] = check_value(knob, number)
    return Params(**values)
