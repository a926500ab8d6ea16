"""The model against what the benches measured, where their setups allow a comparison.

The benches run on one machine at thousands of requests a second, so their results are checks
on the model's mechanisms (what moves, what is ordered how, what is bounded), not its outputs
at a fleet's scale.
"""

import dataclasses

import pytest
from cachefleet.sim.calibration import FIGURE, figure
from cachefleet.sim.params import Params
from cachefleet.sim.popularity import zipf_buckets
from cachefleet.sim.rings import ring_tables
from cachefleet.sim.scenarios.capacity import capacity_change
from cachefleet.sim.scenarios.celebrity import celebrity


def test_the_default_detection_is_the_measured_ejection() -> None:
    assert FIGURE["sidecar_eject_ms"].role == "input"
    assert Params().detection_s == figure("sidecar_eject_ms") / 1000
    # The sidecar's reads failed for less than that (it retries them on the gutter first), so
    # charging the whole detection time as lost reads is on the safe side.
    assert figure("sidecar_kill_error_window_s") <= Params().detection_s


def test_a_4_to_5_change_moves_what_the_warm_up_bench_saw_and_ranks_the_ways_alike() -> None:
    params = Params()
    ring = ring_tables([2], [4, 5]).resize[(4, 5)]
    result = capacity_change(params, zipf_buckets(params.keys, params.zipf_s), ring).strategies
    assert result["modulo"].moved_share == pytest.approx(figure("warmup_modulo_missed"), abs=0.01)
    # The bench: warm-up 1.08×, the ring at once 1.71×; the model keeps that order.
    assert figure("warmup_peak") < figure("warmup_immediate_peak")
    assert result["warmup"].peak_ratio < result["planned"].peak_ratio < result["modulo"].peak_ratio


def test_once_hot_the_model_sends_its_shard_no_more_than_the_bench_saw() -> None:
    # bench/hotkeys_celebrity.py: one sidecar, L1 TTL 1 s, threshold 1000/s, the celebrity read
    # 55,939 times a second and never written. Its 0.4% includes the reads before detection,
    # which the model leaves out, so the model's steady share must not exceed it.
    bench = dataclasses.replace(
        Params(), app_pods=1, celebrity_rate=55_939, celebrity_writes=0, l1_ttl_ms=1000
    )
    result = celebrity(bench)
    assert result.hot
    assert result.share_reaching_shard <= figure("l1_share_reaching_shard")
