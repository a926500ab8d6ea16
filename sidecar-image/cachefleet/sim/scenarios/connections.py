"""How many connections each cache node holds: every app process dialling every node, or one
sidecar per pod multiplexing them all over ``connectionsPerShard`` pipelined connections."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cachefleet.sim.calibration import figure
from cachefleet.sim.params import KNOB, Params

CURVE_POINTS = 61


@dataclass(frozen=True)
class Connections:
    client_side_total: float
    sidecar_total: float
    client_side_per_shard: float
    sidecar_per_shard: float
    client_side_per_pod: float
    sidecar_per_pod: float
    app_to_sidecar_per_pod: float  # loopback connections inside each pod
    reduction: float  # client-side ÷ sidecar, per shard
    maxclients: float
    client_side_shard_memory_active: float  # bytes of connection state per shard
    client_side_shard_memory_idle: float
    sidecar_shard_memory_active: float
    sidecar_shard_memory_idle: float
    curve_pods: list[float]
    curve_client_side_per_shard: list[float]
    curve_sidecar_per_shard: list[float]


def connections(p: Params) -> Connections:
    per_process = p.workers_per_pod * p.pool_per_worker
    client_per_shard = p.app_pods * per_process
    sidecar_per_shard = p.app_pods * p.connections_per_shard
    active, idle = figure("connection_bytes_active"), figure("connection_bytes_idle")
    low, high = KNOB["app_pods"].minimum, KNOB["app_pods"].maximum
    pods = [
        low * math.exp(math.log(high / low) * i / (CURVE_POINTS - 1)) for i in range(CURVE_POINTS)
    ]
    return Connections(
        client_side_total=client_per_shard * p.shards,
        sidecar_total=sidecar_per_shard * p.shards,
        client_side_per_shard=client_per_shard,
        sidecar_per_shard=sidecar_per_shard,
        client_side_per_pod=per_process * p.shards,
        sidecar_per_pod=p.connections_per_shard * p.shards,
        app_to_sidecar_per_pod=per_process,
        reduction=client_per_shard / sidecar_per_shard,
        maxclients=figure("redis_maxclients"),
        client_side_shard_memory_active=client_per_shard * active,
        client_side_shard_memory_idle=client_per_shard * idle,
        sidecar_shard_memory_active=sidecar_per_shard * active,
        sidecar_shard_memory_idle=sidecar_per_shard * idle,
        curve_pods=pods,
        curve_client_side_per_shard=[n * per_process for n in pods],
        curve_sidecar_per_shard=[n * p.connections_per_shard for n in pods],
    )
