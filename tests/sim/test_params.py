import dataclasses

import pytest
from cachefleet.sim.params import KNOB, KNOBS, WARMUP_STEPS_PERCENT, Params, params_with
from cachefleet_operator.api.spec import GutterSpec, SidecarSpec, WarmUpSpec


def test_every_knob_is_a_field_of_params_and_back() -> None:
    assert [field.name for field in dataclasses.fields(Params)] == [knob.name for knob in KNOBS]


@pytest.mark.parametrize("knob", KNOBS, ids=lambda knob: knob.name)
def test_each_default_is_a_value_its_slider_can_show(knob) -> None:
    if knob.choices:
        assert knob.default in knob.choices
    else:
        assert knob.minimum <= knob.default <= knob.maximum
    assert knob.source


def test_defaults_are_what_a_cachecluster_gets_by_default() -> None:
    # The data plane cannot import the operator, so the simulator restates its defaults; this
    # keeps the two from drifting apart.
    warm_up, gutter, sidecar = WarmUpSpec(), GutterSpec(), SidecarSpec()
    assert list(WARMUP_STEPS_PERCENT) == warm_up.steps
    defaults = Params()
    assert defaults.step_seconds == warm_up.step_seconds
    assert defaults.cutover_hit_ratio == warm_up.cutover_hit_ratio
    assert defaults.warmup_timeout_s == warm_up.timeout_seconds
    assert defaults.grace_s == warm_up.grace_seconds
    assert defaults.gutter_size == gutter.size
    assert defaults.gutter_ttl_s == gutter.ttl_seconds
    assert defaults.hot_threshold == sidecar.hot_keys.threshold_per_second
    assert defaults.l1_ttl_ms == sidecar.l1.ttl_ms
    assert defaults.connections_per_shard == sidecar.pool_size


def test_overrides_are_checked_and_applied() -> None:
    params = params_with({"shards": "16", "outage_s": "120", "zipf_s": "1.1"})
    assert (params.shards, params.outage_s, params.zipf_s) == (16, 120, 1.1)
    assert params.app_pods == KNOB["app_pods"].default


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"shard": "4"}, "unknown parameter 'shard'"),
        ({"shards": "many"}, "shards='many': not a number"),
        ({"shards": "7"}, "shards=7: choose one of 2, 3, 4"),
        ({"outage_s": "-5"}, "outage_s=-5: must be between 5 and 600"),
        ({"zipf_s": "nan"}, "zipf_s: nan is not a finite number"),
        ({"pipeline": "8"}, "pipeline=8: choose one of 1, 16"),
    ],
)
def test_bad_overrides_say_what_is_wrong(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        params_with(overrides)
