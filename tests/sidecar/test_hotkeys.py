"""Hot-key detection: the windowed sketch, the top-K table and the hot set, in both builds.

Every behaviour test runs on the pure-Python reference and on the C type with a fake clock.
Hypothesis then drives both with the same random streams, clock steps and parameters and
requires identical answers after every step: estimates, top-K tables, rates, hot sets.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import random
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

import mmh3
import pytest
from cachefleet.config import HotKeysConfig
from cachefleet.sidecar.hotkeys import HotKeys, hot_keys_report, printable_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

MS = 1_000_000  # nanoseconds
START = 1_000 * 1000 * MS  # a round time: sub-windows start at whole multiples of it


def native_type() -> Any:
    """The C type; a failure, not a skip, when a compiler is here and it was not built."""
    try:
        from cachefleet.sidecar._speedups import HotKeys as Native
    except ImportError:
        if shutil.which("cc") or shutil.which("gcc"):
            pytest.fail(
                "a compiler is here but cachefleet.sidecar._speedups was not built: run "
                "`.venv/bin/pip install -e '.[operator,dev]'` and read its build output"
            )
        pytest.skip("no C compiler on this machine: only the pure-Python build exists")
    return Native


class FakeClock:
    def __init__(self, now: int = START) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += int(ms * MS)


Factory = Callable[..., Any]


@pytest.fixture(params=["python", "c"])
def make(request: pytest.FixtureRequest) -> Factory:
    """Either implementation, admitting any key to the table (``admit_percent=0``): these tests
    are about the table's mechanics; the admission floor has its own test."""
    implementation = HotKeys if request.param == "python" else native_type()
    return functools.partial(implementation, admit_percent=0)


def h(key: bytes) -> int:
    return mmh3.hash(key, 0, False)


def wide(make: Factory, clock: FakeClock, **kwargs: Any) -> Any:
    """A sketch wide enough that the few keys of a test never share a counter."""
    return make(1 << 16, 4, clock=clock, **kwargs)


@pytest.mark.parametrize("implementation", ["python", "c"])
def test_keys_far_from_hot_never_enter_the_table(implementation: str) -> None:
    """By default a key is tracked only once its window count reaches 12% of what the threshold
    rate fills a window with, so uniform traffic does not churn the table."""
    clock = FakeClock(START)
    factory = HotKeys if implementation == "python" else native_type()
    tracker = factory(1 << 16, 4, threshold_per_second=1000, window_ms=1000, clock=clock)
    for i in range(2000):
        hit(tracker, b"uniform:%d" % i, 3)  # 3 each: far below 120
    assert tracked(tracker) == {}
    hit(tracker, b"rising", 119)
    assert tracked(tracker) == {}
    hit(tracker, b"rising")
    assert tracked(tracker) == {b"rising": 120}


def hit(tracker: Any, key: bytes, times: int = 1) -> bool:
    hot = False
    for _ in range(times):
        hot = tracker.observe(key, h(key))
    return hot


def at_rate(tracker: Any, clock: FakeClock, key: bytes, per_second: int, seconds: float) -> bool:
    """``key`` evenly at ``per_second`` for ``seconds``; whether it was hot at the end."""
    hot = False
    for _ in range(int(per_second * seconds)):
        clock.advance(1000 / per_second)
        hot = tracker.observe(key, h(key))
    return hot


def tracked(tracker: Any) -> dict[bytes, int]:
    return {key: count for key, count, _, _ in tracker.snapshot()}


# -- becoming hot and cooling down -----------------------------------------------------------


def test_a_key_becomes_hot_when_its_rate_crosses_the_threshold(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, threshold_per_second=100)
    # The first sub-window (250 ms) is the shortest time a rate is measured over: 100/s needs
    # more than 25 requests in it, so the 26th is the first hot one.
    answers = []
    for _ in range(26):
        clock.advance(5)
        answers.append(tracker.observe(b"celebrity", h(b"celebrity")))
    assert answers == [False] * 25 + [True]
    assert tracker.hot_keys() == frozenset({b"celebrity"})
    assert tracker.hot_generation == 1
    [(key, count, rate, hot)] = tracker.snapshot()
    assert (key, count, hot) == (b"celebrity", 26, True)
    assert rate == pytest.approx(26 / 0.25)


def test_a_key_below_the_threshold_never_becomes_hot(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, threshold_per_second=100)
    assert not at_rate(tracker, clock, b"busy", 80, 3.0)
    assert tracker.hot_keys() == frozenset()
    [(_, _, rate, hot)] = tracker.snapshot()
    assert not hot
    # 750 ms covered here (the clock is at a sub-window's first instant): one request is 1.33/s
    assert 78 <= rate <= 82, "a steady rate reads as itself over the window"


def test_a_hot_key_that_stops_cools_down_and_leaves_the_table(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, threshold_per_second=100)
    assert at_rate(tracker, clock, b"k", 300, 2.0)
    generation = tracker.hot_generation
    clock.advance(500)  # half the window without it: 100/s over what is left, still hot
    tracker.tick()
    assert tracker.hot_keys() == frozenset({b"k"})
    clock.advance(500)  # a full window without it
    tracker.tick()
    assert tracker.hot_keys() == frozenset()
    assert tracker.hot_generation == generation + 1
    assert tracker.snapshot() == [], "a key with nothing left in the window is dropped"


def test_a_key_between_the_cool_line_and_the_threshold_keeps_its_state(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, threshold_per_second=100, cool_percent=80)
    assert at_rate(tracker, clock, b"k", 200, 1.5)
    # Down to 90/s: under the threshold but above 80% of it, so it stays hot (no flapping).
    assert at_rate(tracker, clock, b"k", 90, 3.0)
    # Down to 70/s: below the cool line.
    assert not at_rate(tracker, clock, b"k", 70, 2.0)
    # Back up to 90/s: under the threshold, so it does not become hot again.
    assert not at_rate(tracker, clock, b"k", 90, 3.0)
    assert tracker.hot_generation == 2


def test_without_hysteresis_the_threshold_is_the_line_both_ways(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, threshold_per_second=100, cool_percent=100)
    assert at_rate(tracker, clock, b"k", 200, 1.5)
    assert not at_rate(tracker, clock, b"k", 90, 3.0)


# -- the window ----------------------------------------------------------------------------------


def test_counts_leave_the_window_one_sub_window_at_a_time(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, window_ms=1000, sub_windows=4)
    hit(tracker, b"a", 10)
    clock.advance(250)
    hit(tracker, b"a", 5)
    assert tracker.estimate(h(b"a")) == 15
    clock.advance(500)  # the first sub-window is now the oldest of the four
    tracker.tick()
    assert tracker.estimate(h(b"a")) == 15
    clock.advance(250)  # and now it has left the window
    tracker.tick()
    assert tracker.estimate(h(b"a")) == 5
    assert tracked(tracker) == {b"a": 5}
    clock.advance(250)
    tracker.tick()
    assert tracker.estimate(h(b"a")) == 0


def test_a_jump_past_the_whole_window_empties_it(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock)
    hit(tracker, b"a", 50)
    clock.advance(3_600_000)
    assert tracker.observe(b"b", h(b"b")) is False
    assert tracker.estimate(h(b"a")) == 0
    assert tracked(tracker) == {b"b": 1}


def test_the_rate_is_the_count_over_the_time_the_window_covers(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, window_ms=1000, sub_windows=4)
    hit(tracker, b"a", 10)
    clock.advance(100)
    [(_, _, rate, _)] = tracker.snapshot()
    assert rate == pytest.approx(10 / 0.25), "never over less than one sub-window"
    clock.advance(400)
    [(_, _, rate, _)] = tracker.snapshot()
    assert rate == pytest.approx(10 / 0.5)
    clock.advance(2000)
    hit(tracker, b"a", 30)
    clock.advance(100)  # 100 ms into a sub-window: the window covers 850 ms
    [(_, _, rate, _)] = tracker.snapshot()
    assert rate == pytest.approx(30 / 0.85)


def test_a_clock_that_steps_back_is_held_where_it_was(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock)
    hit(tracker, b"a", 3)
    clock.advance(600)
    hit(tracker, b"a")
    clock.advance(-500)
    hit(tracker, b"a")
    assert tracker.estimate(h(b"a")) == 5


# -- the top-K table -----------------------------------------------------------------------------


def test_a_heavier_key_evicts_the_lightest_when_the_table_is_full(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, top_k=2)
    hit(tracker, b"a", 5)
    hit(tracker, b"b", 3)
    hit(tracker, b"c", 3)
    assert tracked(tracker) == {b"a": 5, b"b": 3}, "a tie does not evict"
    hit(tracker, b"c")
    assert tracked(tracker) == {b"a": 5, b"c": 4}
    hit(tracker, b"b")
    assert tracked(tracker) == {b"a": 5, b"c": 4}, "b's 4 is not above c's 4"
    hit(tracker, b"b")
    assert tracked(tracker) == {b"a": 5, b"b": 5}


def test_the_lightest_entry_is_read_again_before_it_is_evicted(make: Factory) -> None:
    clock = FakeClock()
    # One counter for every key: each estimate is the whole stream so far, so stored counts
    # fall behind the sketch as soon as another key arrives.
    tracker = make(1, 1, top_k=2, clock=clock)
    hit(tracker, b"a")
    hit(tracker, b"b")
    assert tracked(tracker) == {b"b": 2, b"a": 1}
    hit(tracker, b"c")  # reads 3; a and b read 3 too when asked again: nobody is ahead
    assert tracked(tracker) == {b"a": 3, b"b": 3}


def test_an_evicted_hot_key_leaves_the_hot_set(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, top_k=1, threshold_per_second=10)
    assert hit(tracker, b"a", 5)
    assert tracker.hot_keys() == frozenset({b"a"})
    assert not hit(tracker, b"b", 5)
    assert hit(tracker, b"b")
    assert tracker.hot_keys() == frozenset({b"b"})
    assert tracker.hot_generation == 3


def test_the_top_k_of_a_skewed_stream_are_the_heaviest_keys(make: Factory) -> None:
    clock = FakeClock()
    tracker = make(2048, 4, top_k=8, clock=clock)
    rng = random.Random(5)
    keys = [b"key:%d" % i for i in range(2000)]
    weights = [(i + 1) ** -1.1 for i in range(len(keys))]
    stream = rng.choices(keys, weights, k=30_000)
    tracker.observe_all(stream, [h(key) for key in stream])
    exact = collections.Counter(stream)
    assert set(tracked(tracker)) == {key for key, _ in exact.most_common(8)}
    for key, count in tracked(tracker).items():
        assert count >= exact[key]


def test_the_hot_set_object_is_kept_until_it_changes(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, threshold_per_second=10)
    empty = tracker.hot_keys()
    assert empty == frozenset() and tracker.hot_keys() is empty
    hit(tracker, b"a", 5)
    first = tracker.hot_keys()
    assert first == frozenset({b"a"})
    hit(tracker, b"a", 5)
    hit(tracker, b"b")
    assert tracker.hot_keys() is first


def test_observe_all_counts_the_hot_answers(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, threshold_per_second=10)
    keys = [b"a"] * 5 + [b"b"]
    assert tracker.observe_all(keys, [h(k) for k in keys]) == 3
    with pytest.raises(ValueError, match="one hash per key"):
        tracker.observe_all([b"a"], [])


def test_the_real_clock_is_the_default(make: Factory) -> None:
    # One request is at least 1/s over any window of at most a second, and below 1000/s over
    # the quarter second a rate is never measured under: whatever time the test takes.
    tracker = make(1024, 4, threshold_per_second=1)
    assert tracker.observe(b"a", h(b"a")) is True
    tracker = make(1024, 4, threshold_per_second=1000)
    assert tracker.observe(b"a", h(b"a")) is False
    assert tracked(tracker) == {b"a": 1}


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0, "depth": 4}, r"width must be in \[1, 268435456\], not 0"),
        ({"width": 8, "depth": 17}, r"depth must be in \[1, 16\], not 17"),
        ({"width": 8, "depth": 4, "top_k": 0}, r"top_k must be in \[1, 10000\], not 0"),
        ({"width": 8, "depth": 4, "threshold_per_second": 0}, "threshold_per_second"),
        ({"width": 8, "depth": 4, "window_ms": 60_001}, "window_ms"),
        ({"width": 8, "depth": 4, "sub_windows": 17}, "sub_windows"),
        ({"width": 8, "depth": 4, "cool_percent": 101}, "cool_percent"),
        ({"width": 1 << 26, "depth": 4, "sub_windows": 2}, "too large"),
    ],
)
def test_bad_parameters_are_refused(make: Factory, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_bad_keys_hashes_and_clocks_are_refused(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock)
    with pytest.raises(TypeError, match="key must be bytes"):
        tracker.observe("a", 1)
    for bad in (-1, 1 << 32, 1 << 70):
        with pytest.raises(ValueError, match="key_hash"):
            tracker.observe(b"a", bad)
        with pytest.raises(ValueError, match="key_hash"):
            tracker.estimate(bad)
    clock.now = -1
    with pytest.raises(ValueError, match="below zero"):
        tracker.observe(b"a", 1)
    with pytest.raises(ValueError, match="below zero"):
        make(8, 4, clock=clock)
    with pytest.raises(TypeError, match="int nanoseconds"):
        make(8, 4, clock=lambda: 1.5)
    with pytest.raises(TypeError, match="callable"):
        make(8, 4, clock=5)
    clock.now = START
    assert tracked(tracker) == {}, "nothing was counted from the refused calls"


def test_an_uninitialised_c_tracker_refuses_instead_of_crashing() -> None:
    native = native_type()
    tracker = native.__new__(native)
    for call in (
        lambda: tracker.observe(b"a", 1),
        lambda: tracker.observe_all([b"a"], [1]),  # the request loop's entry point
        lambda: tracker.estimate(1),
        tracker.tick,
        tracker.snapshot,
    ):
        with pytest.raises(ValueError, match="not initialised"):
            call()


# -- memory --------------------------------------------------------------------------------------


def test_the_default_config_keeps_the_sketch_under_one_megabyte() -> None:
    config = HotKeysConfig()
    assert config.top_k == 64 and config.threshold_per_second == 1000
    assert config.sketch_bytes <= 1_000_000
    assert config.width == 2719 and config.depth == 4  # ⌈e/0.001⌉, ⌈ln(1/0.02)⌉


@pytest.mark.parametrize("implementation", ["python", "c"])
def test_the_tracker_holds_no_more_than_its_sketch_and_table(implementation: str) -> None:
    config = HotKeysConfig()
    make = HotKeys if implementation == "python" else native_type()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracker = make(config.width, config.depth, clock=FakeClock())
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert tracker.memory_bytes == config.sketch_bytes
    assert config.sketch_bytes <= held <= 1_000_000
    assert held - config.sketch_bytes <= 8 * 1024, "the top-K table is small beside the sketch"


def test_config_derives_width_and_depth_and_refuses_a_huge_sketch() -> None:
    config = HotKeysConfig.model_validate({"epsilon": 0.01, "delta": 0.001, "topK": 10})
    assert (config.width, config.depth) == (272, 7)
    pinned = HotKeysConfig.model_validate({"sketchWidth": 2048, "sketchDepth": 4})
    assert (pinned.width, pinned.depth) == (2048, 4)
    with pytest.raises(ValidationError, match="raise epsilon or delta"):
        HotKeysConfig(epsilon=1e-6)
    with pytest.raises(ValidationError):
        HotKeysConfig(delta=0.0)
    with pytest.raises(ValidationError):
        HotKeysConfig(top_k=0)


# -- the admin view and the selection ------------------------------------------------------------


def test_printable_keys_are_unambiguous() -> None:
    assert printable_key(b"user:1") == "user:1"
    assert printable_key("é".encode()) == "é"
    assert printable_key(b"a\\b") == "a\\\\b"
    assert printable_key(b"\xff\x00\t") == "\\xff\\x00\\t"
    assert printable_key(b"\\xff") != printable_key(b"\xff")


def test_the_report_is_json_with_every_tracked_key(make: Factory) -> None:
    clock = FakeClock()
    tracker = wide(make, clock, threshold_per_second=10, top_k=4)
    hit(tracker, b"hot\x00key", 20)
    hit(tracker, b"cold")
    report = json.loads(json.dumps(hot_keys_report(tracker)))
    assert report["topK"] == 4 and report["thresholdPerSecond"] == 10
    assert report["sketch"]["memoryBytes"] == tracker.memory_bytes
    assert report["keys"] == [
        {"key": "hot\\x00key", "count": 20, "ratePerSecond": 80.0, "hot": True},
        {"key": "cold", "count": 1, "ratePerSecond": 4.0, "hot": False},
    ]


SELECTED = (
    "from cachefleet.config import HotKeysConfig\n"
    "from cachefleet.sidecar.hotkeys import make_hot_keys\n"
    "print(type(make_hot_keys(HotKeysConfig())).__module__)"
)


@pytest.mark.parametrize(("pure", "expected"), [("1", "cachefleet.sidecar.hotkeys"), ("", None)])
def test_make_hot_keys_takes_c_unless_told_otherwise(pure: str, expected: str | None) -> None:
    if expected is None:
        native_type()
        expected = "cachefleet.sidecar._speedups"
    env = {**os.environ, "CACHEFLEET_PURE_PYTHON": pure}
    result = subprocess.run(
        [sys.executable, "-c", SELECTED], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


# -- C and Python give identical answers -----------------------------------------------------

KEYS = [b"", b"a", b"b", b"{user1}:x", b"{user1}:y", b"k" * 40, b"\x00\xff", b"c", b"d", b"e"]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("observe"), st.integers(0, len(KEYS) - 1), st.integers(0, 60)),
        st.tuples(st.just("tick"), st.just(0), st.integers(0, 3000)),
        st.tuples(st.just("snapshot"), st.just(0), st.integers(0, 300)),
    ),
    max_size=150,
)
parameters = st.fixed_dictionaries(
    {
        "width": st.integers(1, 40),
        "depth": st.integers(1, 4),
        "top_k": st.integers(1, 6),
        "threshold_per_second": st.integers(1, 200),
        "window_ms": st.integers(1, 2000),
        "sub_windows": st.integers(1, 5),
        "cool_percent": st.integers(1, 100),
        "admit_percent": st.integers(0, 100),
    }
)
# Some keys share a hash on purpose (so they share every counter); each key keeps its own.
key_hashes = st.lists(
    st.one_of(st.integers(0, 3), st.integers(0, (1 << 32) - 1), st.just(None)),
    min_size=len(KEYS),
    max_size=len(KEYS),
).map(lambda picks: [h(k) if p is None else p for k, p in zip(KEYS, picks, strict=True)])


def both(parameters: dict[str, int]) -> tuple[Any, Any, FakeClock]:
    clock = FakeClock(START + 123 * MS)
    return HotKeys(clock=clock, **parameters), native_type()(clock=clock, **parameters), clock


def assert_same(python: Any, c: Any) -> None:
    assert python.hot_keys() == c.hot_keys()
    assert python.hot_generation == c.hot_generation
    for key_hash in range(4):
        assert python.estimate(key_hash) == c.estimate(key_hash)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parameters, key_hashes, operations)
def test_c_and_python_agree_step_by_step(
    parameters: dict[str, int], hashes: list[int], steps: list[tuple[str, int, int]]
) -> None:
    python, c, clock = both(parameters)
    for action, index, ms in steps:
        clock.advance(ms)
        if action == "observe":
            key = KEYS[index]
            assert python.observe(key, hashes[index]) == c.observe(key, hashes[index])
        elif action == "tick":
            python.tick()
            c.tick()
        else:
            assert python.snapshot() == c.snapshot()
        assert_same(python, c)
        for key_hash in hashes:
            assert python.estimate(key_hash) == c.estimate(key_hash)
    assert python.snapshot() == c.snapshot()
    assert (python.width, python.depth, python.memory_bytes) == (c.width, c.depth, c.memory_bytes)


def test_c_and_python_agree_on_a_long_skewed_stream() -> None:
    clock_steps = random.Random(11)
    python, c, clock = both({"width": 512, "depth": 4, "top_k": 16, "threshold_per_second": 400})
    keys = [b"key:%d" % i for i in range(5000)]
    weights = [(i + 1) ** -1.1 for i in range(len(keys))]
    stream = random.Random(3).choices(keys, weights, k=40_000)
    for n, key in enumerate(stream):
        clock.advance(clock_steps.random() * 0.2)
        assert python.observe(key, h(key)) == c.observe(key, h(key))
        if n % 1000 == 0:
            assert python.snapshot() == c.snapshot()
            assert_same(python, c)
    assert python.snapshot() == c.snapshot()
    assert python.hot_keys() and python.hot_keys() == c.hot_keys()
