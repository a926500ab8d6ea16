"""The whole model: every scenario for one set of inputs, as plain JSON-ready data.

The page carries the same model in JavaScript (``page/model.js``) so its sliders recompute
without a server; ``tests/sim/test_page.py`` runs both on the same inputs and compares them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cachefleet.sim.params import Params
from cachefleet.sim.popularity import zipf_buckets
from cachefleet.sim.rings import RingTables
from cachefleet.sim.scenarios.capacity import capacity_change
from cachefleet.sim.scenarios.celebrity import celebrity
from cachefleet.sim.scenarios.connections import connections
from cachefleet.sim.scenarios.failure import failure
from cachefleet.sim.scenarios.latency import latency


def simulate(params: Params, rings: RingTables) -> dict[str, Any]:
    failure_ring = rings.failure.get(int(params.shards))
    resize_ring = rings.resize.get((int(params.resize_from), int(params.resize_to)))
    if failure_ring is None or resize_ring is None:
        raise ValueError(
            f"no ring figures for {params.shards:g} shards or "
            f"{params.resize_from:g} → {params.resize_to:g}; compute them with ring_tables()"
        )
    buckets = zipf_buckets(params.keys, params.zipf_s)
    results: dict[str, Any] = {
        "connections": connections(params),
        "latency": latency(params),
        "failure": failure(params, buckets, failure_ring),
        "celebrity": celebrity(params),
        "capacity": capacity_change(params, buckets, resize_ring),
    }
    return {name: dataclasses.asdict(result) for name, result in results.items()}
