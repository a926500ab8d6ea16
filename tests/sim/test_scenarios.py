import dataclasses

import pytest
from cachefleet.sim.calibration import figure
from cachefleet.sim.load import Keyspace, Phase, extra_reads, per_second
from cachefleet.sim.model import simulate
from cachefleet.sim.params import Params
from cachefleet.sim.popularity import zipf_buckets
from cachefleet.sim.rings import RingTables, ring_tables
from cachefleet.sim.scenarios.capacity import capacity_change
from cachefleet.sim.scenarios.celebrity import celebrity
from cachefleet.sim.scenarios.connections import connections
from cachefleet.sim.scenarios.failure import failure
from cachefleet.sim.scenarios.latency import latency


@pytest.fixture(scope="module")
def rings() -> RingTables:
    return ring_tables([4, 16, 100], [4, 5])


def with_(**changes: float) -> Params:
    return dataclasses.replace(Params(), **changes)


# -- connections ------------------------------------------------------------------------------


def test_the_issues_example_is_a_hundred_thousand_connections() -> None:
    result = connections(with_(app_pods=1000, shards=100, workers_per_pod=1, pool_per_worker=1))
    assert result.client_side_total == 100_000
    assert result.client_side_per_shard == 1000
    # One process per pod and one connection each: the sidecar has nothing to multiplex.
    assert result.sidecar_total == 100_000 and result.reduction == 1


def test_the_sidecar_divides_by_processes_times_pool() -> None:
    result = connections(with_(app_pods=1000, shards=100, workers_per_pod=16, pool_per_worker=4))
    assert result.client_side_per_shard == 64_000  # over Redis's default maxclients
    assert result.client_side_per_shard > result.maxclients > result.sidecar_per_shard
    assert result.reduction == 64
    assert result.sidecar_per_pod == 100 and result.app_to_sidecar_per_pod == 64
    assert result.client_side_shard_memory_idle == 64_000 * figure("connection_bytes_idle")


# -- the extra hop ----------------------------------------------------------------------------


def test_an_idle_sidecar_adds_its_measured_hop() -> None:
    result = latency(with_(request_rate=10_000, app_pods=10_000))
    assert result.hop_us == pytest.approx(figure("sidecar_hop_us"), rel=1e-4)
    assert result.sidecar_us == pytest.approx(result.direct_us + figure("sidecar_hop_us"), rel=1e-4)
    assert result.sidecar_cores == pytest.approx(10_000 * figure("sidecar_cpu_us_p1") / 1e6)


def test_under_load_the_queue_wait_adds_to_the_measured_hop() -> None:
    # Half the sidecar's core busy: an M/M/1 queue waits one service time on average.
    service = figure("sidecar_cpu_us_p1")
    result = latency(with_(request_rate=0.5e6 / service * 1000, app_pods=1000))
    assert result.sidecar_utilisation == pytest.approx(0.5)
    assert result.hop_us == pytest.approx(figure("sidecar_hop_us") + service)


def test_client_side_routing_is_shown_compiled_and_as_cachefleets_python_client() -> None:
    params = Params()
    result = latency(params)
    # A compiled client pays the hash and ring look-up; the Python client what bench/client.py
    # measured it adding to each call.
    assert result.client_side_us == pytest.approx(result.direct_us + figure("route_cost_us"))
    assert result.python_client_us == pytest.approx(
        result.direct_us + figure("python_client_added_us")
    )
    assert result.smart_client_cores == pytest.approx(
        params.request_rate * figure("route_cost_us") / 1e6
    )
    assert result.python_client_cores == pytest.approx(
        params.request_rate * figure("python_client_added_us") / 1e6
    )
    assert result.client_side_us < result.python_client_us < result.sidecar_us
    assert result.overhead == pytest.approx(result.sidecar_us / result.client_side_us - 1)


def test_a_saturated_sidecar_has_no_finite_latency() -> None:
    result = latency(with_(request_rate=20_000_000, app_pods=100))  # 200k/s per sidecar
    assert result.sidecar_utilisation > 1
    assert result.hop_us is None and result.sidecar_us is None and result.overhead is None
    assert result.curve_hop_us == sorted(result.curve_hop_us)  # grows with load


def test_pipelining_raises_what_one_sidecar_takes() -> None:
    p1, p16 = latency(with_(pipeline=1)), latency(with_(pipeline=16))
    assert p16.sidecar_saturation_rate == pytest.approx(1e6 / figure("sidecar_cpu_us_p16"))
    assert p16.sidecar_saturation_rate > 5 * p1.sidecar_saturation_rate


# -- a node failure ---------------------------------------------------------------------------


def test_a_failure_costs_what_each_strategy_should(rings: RingTables) -> None:
    params = with_(shards=16)
    result = failure(params, zipf_buckets(params.keys, params.zipf_s), rings.failure[16])
    s = result.strategies
    # Without failover the node's reads fail for the whole outage; otherwise until detection.
    assert s["none"].failed_reads == pytest.approx(params.request_rate / 16 * params.outage_s)
    assert result.gutter_failure_reduction == pytest.approx(
        1 - params.detection_s / params.outage_s
    )
    assert result.gutter_failure_reduction >= figure("gutter_failure_reduction")
    # Modulo moves almost everything and hits the database hardest.
    assert s["modulo"].moved_share == pytest.approx(15 / 16)
    assert s["modulo"].peak_ratio > 5 * max(s["consistent"].peak_ratio, s["gutter"].peak_ratio)
    # A short gutter TTL misses more than neighbours with the app's TTL, and sustains it.
    assert s["gutter"].extra_database_reads > s["consistent"].extra_database_reads
    assert s["none"].extra_database_reads > s["gutter"].extra_database_reads
    # The ring neighbours take load; the gutter's one server takes the node's.
    assert s["consistent"].busiest_server_rate > params.request_rate / 16
    assert s["gutter"].busiest_server_rate == pytest.approx(params.request_rate / 16)


def test_only_keys_that_moved_back_to_old_copies_read_stale(rings: RingTables) -> None:
    buckets = zipf_buckets(Params().keys, Params().zipf_s)
    restarted = failure(with_(shards=16), buckets, rings.failure[16]).strategies
    hung = failure(with_(shards=16, returns_with_data=1), buckets, rings.failure[16]).strategies
    # A restarted node is empty; under modulo the other moved keys still return to old copies.
    assert restarted["consistent"].stale_reads == restarted["none"].stale_reads == 0
    assert restarted["modulo"].stale_share == pytest.approx(15 / 16 - 1 / 16)
    assert restarted["modulo"].stale_reads > 0
    # A node that comes back with its data serves stale copies, except behind the gutter.
    assert hung["consistent"].stale_reads > 0 and hung["none"].stale_reads > 0
    assert hung["gutter"].stale_reads == 0
    assert hung["modulo"].stale_reads > restarted["modulo"].stale_reads


def test_per_second_figures_add_up_to_the_exact_total() -> None:
    keys = Keyspace(zipf_buckets(1e6, 0.9), 50_000.0, 120.0)
    base = keys.baseline
    phases = [
        Phase(-5.0),
        Phase(0.0, 0.1, "database"),
        Phase(0.5, 0.3, "cold", 10.0, ((0.4, 0.5), (0.6, -20.0))),
        Phase(30.0, 0.1, "cold", 120.0, ((1.0, 30.0),)),
    ]
    seconds = [per_second(keys, base, phases, t) - base for t in range(-4, 91)]
    assert sum(seconds) == pytest.approx(extra_reads(keys, base, phases, -5.0, 90.0), rel=1e-9)


# -- a celebrity key --------------------------------------------------------------------------


def test_with_many_pods_the_default_threshold_never_sees_the_key() -> None:
    result = celebrity(with_(app_pods=1000, celebrity_rate=200_000))
    assert result.rate_per_sidecar == 200 and not result.hot
    assert result.hot_shard_rate_with_l1 == result.hot_shard_rate_without_l1
    assert result.utilisation_without_l1 > 1  # saturated, and L1 never started
    assert result.l1_from_fleet_rate == 1000 * Params().hot_threshold


def test_it_says_which_threshold_would_catch_the_key_in_time() -> None:
    result = celebrity(with_(app_pods=1000, celebrity_rate=200_000))
    protect = result.threshold_to_protect_shard
    assert protect == pytest.approx(result.overload_from_rate / 1000)
    assert protect < result.rate_per_sidecar  # the key is past the point of saturating its shard
    # With that threshold, a key at the rate that saturates the shard is hot and served from L1.
    caught = celebrity(
        with_(app_pods=1000, celebrity_rate=result.overload_from_rate, hot_threshold=protect)
    )
    assert caught.hot and caught.utilisation_with_l1 < 1
    # Just above it, the same key is not caught.
    missed = celebrity(
        with_(app_pods=1000, celebrity_rate=result.overload_from_rate, hot_threshold=protect * 1.01)
    )
    assert not missed.hot


def test_l1_takes_the_key_off_its_shard_once_hot() -> None:
    result = celebrity(with_(app_pods=20, celebrity_rate=200_000, celebrity_writes=1))
    assert result.hot
    # 20 sidecars each fetch once per second (L1 TTL 1 s) plus once per write.
    assert result.hot_shard_rate_with_l1 == pytest.approx(result.normal_shard_rate + 20 * 2 + 1)
    assert result.share_reaching_shard <= 0.10  # issue 9's target
    assert all(w <= wo for w, wo in zip(result.curve_with_l1, result.curve_without_l1, strict=True))


# -- a capacity change ------------------------------------------------------------------------


def test_warm_up_keeps_the_database_near_its_steady_load(rings: RingTables) -> None:
    params = Params()
    result = capacity_change(params, zipf_buckets(params.keys, params.zipf_s), rings.resize[(4, 5)])
    s = result.strategies
    assert s["modulo"].moved_share == pytest.approx(0.8)
    assert s["planned"].moved_share == pytest.approx(0.2, abs=1e-9)
    assert s["warmup"].peak_ratio <= 1.1  # issue 8's target
    assert s["planned"].peak_ratio > 2 * s["warmup"].peak_ratio
    assert s["modulo"].extra_database_reads > 3 * s["planned"].extra_database_reads
    assert s["planned"].extra_database_reads > 10 * s["warmup"].extra_database_reads
    assert not result.cutover_by_timeout
    assert s["warmup"].cutover_s >= result.ramp_done_s == 5 * params.step_seconds
    assert result.warm_hit_ratio_at_cutover >= params.cutover_hit_ratio


def test_a_warm_up_that_never_warms_enough_cuts_over_on_the_timeout(rings: RingTables) -> None:
    params = with_(cutover_hit_ratio=1.0, keys=1e9, key_ttl_s=60)
    result = capacity_change(params, zipf_buckets(params.keys, params.zipf_s), rings.resize[(4, 5)])
    assert result.cutover_by_timeout
    assert result.strategies["warmup"].cutover_s == params.warmup_timeout_s


def test_a_ramp_longer_than_the_timeout_cuts_over_with_cold_steps(rings: RingTables) -> None:
    params = with_(step_seconds=600, warmup_timeout_s=1200, grace_s=0)
    result = capacity_change(params, zipf_buckets(params.keys, params.zipf_s), rings.resize[(4, 5)])
    assert result.cutover_by_timeout and result.strategies["warmup"].cutover_s == 1200
    # The steps that never started (50% and 100%) are half the moved keys, all cold.
    assert result.strategies["warmup"].new_owner_miss_share > 0.5


def test_the_model_refuses_inputs_it_has_no_ring_figures_for(rings: RingTables) -> None:
    with pytest.raises(ValueError, match="no ring figures for 8 shards"):
        simulate(with_(shards=8), rings)
