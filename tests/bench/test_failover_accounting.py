"""The arithmetic of bench/failover.py on hand-made data: what a stale read is, the error window,
a shard's load from INFO samples, the noise bound, and the verdicts built from them."""

from __future__ import annotations

import pytest

from bench.failover_accounting import (
    NOISE_FLOOR,
    Bin,
    CounterSample,
    KeyLedger,
    ReadVerdict,
    back_in_service,
    bins,
    bins_within,
    error_window,
    failure_kind,
    halves,
    load_of,
    noise_bound,
    percentile,
)
from bench.failover_load import Record
from bench.failover_report import Observed, Timeline, shard_loads, targets

# -- stale reads ----------------------------------------------------------------------------


def write(ledger: KeyLedger, key: bytes, acknowledged: bool = True) -> bytes:
    """One write of ``key`` as the load makes it: a fresh value, then its outcome."""
    value = ledger.next_value(key)
    if acknowledged:
        ledger.acked(key, value)
    else:
        ledger.failed(key, value)
    return value


def test_the_last_acknowledged_value_is_fresh_and_a_miss_is_never_stale() -> None:
    ledger = KeyLedger()
    first = write(ledger, b"k")
    assert ledger.judge(b"k", first) == ReadVerdict.FRESH
    assert ledger.judge(b"k", None) == ReadVerdict.MISS
    assert ledger.judge(b"never-written", None) == ReadVerdict.MISS


def test_an_older_acknowledged_value_is_stale() -> None:
    ledger = KeyLedger()
    old, new = write(ledger, b"k"), write(ledger, b"k")
    assert ledger.judge(b"k", new) == ReadVerdict.FRESH
    assert ledger.judge(b"k", old) == ReadVerdict.STALE
    assert ledger.last_acked(b"k") == new


def test_a_failed_write_may_have_landed_until_a_later_write_is_acknowledged() -> None:
    ledger = KeyLedger()
    acked = write(ledger, b"k")
    lost = write(ledger, b"k", acknowledged=False)
    # Its outcome is unknown: either value may be read.
    assert ledger.judge(b"k", lost) == ReadVerdict.PENDING
    assert ledger.judge(b"k", acked) == ReadVerdict.FRESH
    write(ledger, b"k")
    # Once a later write is acknowledged, reading the failed one is reading the past.
    assert ledger.judge(b"k", lost) == ReadVerdict.STALE
    assert ledger.judge(b"k", acked) == ReadVerdict.STALE


def test_a_value_never_written_to_the_key_is_foreign() -> None:
    ledger = KeyLedger()
    write(ledger, b"a")
    theirs = write(ledger, b"b")
    assert ledger.judge(b"a", theirs) == ReadVerdict.FOREIGN
    assert ledger.judge(b"a", b"garbage") == ReadVerdict.FOREIGN


def test_values_are_unique_across_keys() -> None:
    ledger = KeyLedger()
    values = [ledger.next_value(key) for key in (b"a", b"b", b"a", b"c")]
    assert len(set(values)) == len(values)


# -- failures and the window ----------------------------------------------------------------


def test_failure_kinds_blank_addresses_and_numbers() -> None:
    a = failure_kind("ERR shard 127.0.0.1:4242 unavailable: no reply within 500 ms")
    b = failure_kind("ERR shard 127.0.0.1:5151 unavailable: no reply within 750 ms ")
    assert a == b == "ERR shard ADDR unavailable: no reply within N ms"
    assert failure_kind("ConnectionResetError: Connection reset by peer") == (
        "ConnectionResetError: Connection reset by peer"
    )


def test_error_window_runs_from_the_fault_to_the_last_failure_before_the_restore() -> None:
    failures = [9.0, 10.05, 10.2, 10.1, 14.5]
    assert error_window(10.0, failures, until=13.0) == pytest.approx(0.2)
    assert error_window(10.0, [], until=13.0) == 0.0
    assert error_window(10.0, [9.0, 13.0], until=13.0) == 0.0  # before the fault, after until


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


# -- load from INFO samples -------------------------------------------------------------------


def test_bins_subtract_the_samplers_own_info_and_survive_a_restart() -> None:
    samples = [CounterSample(0.0, 100), CounterSample(1.0, 201), CounterSample(2.0, 30)]
    assert bins(samples) == [Bin(0.0, 1.0, 100), Bin(1.0, 2.0, 30)]
    assert bins(samples, own_per_sample=0) == [Bin(0.0, 1.0, 101), Bin(1.0, 2.0, 30)]
    assert bins([CounterSample(0.0, 5), CounterSample(1.0, 5)]) == [Bin(0.0, 1.0, 0)]


def test_load_counts_only_whole_bins_against_the_requests_sent_in_them() -> None:
    shard = [Bin(0.0, 1.0, 300), Bin(1.0, 2.0, 260), Bin(2.0, 3.0, 240)]
    chosen = bins_within(shard, 0.5, 3.0)
    assert chosen == shard[1:]
    sent = [i / 1000 for i in range(3000)]  # 1000 requests a second
    load = load_of(chosen, sent)
    assert (load.seconds, load.commands, load.requests) == (2.0, 500, 2000)
    assert load.per_second == 250.0
    assert load.share == 0.25
    assert load_of([], sent).share == 0.0


def test_halves_split_at_the_middle_in_time() -> None:
    shard = [Bin(float(i), float(i + 1), 1) for i in range(4)]
    first, second = halves(shard)
    assert first == shard[:2] and second == shard[2:]
    assert halves([]) == ([], [])


def test_noise_bound_is_three_rms_of_the_half_to_half_changes_with_a_floor() -> None:
    assert noise_bound([]) == NOISE_FLOOR
    assert noise_bound([0.001, -0.002]) == NOISE_FLOOR
    assert noise_bound([0.04, -0.04, 0.04, -0.04]) == pytest.approx(0.12)


def test_back_in_service_is_the_first_busy_bin_after_the_restore() -> None:
    shard = [Bin(0.0, 1.0, 500), Bin(1.0, 2.0, 5), Bin(2.0, 3.0, 40), Bin(3.0, 4.0, 400)]
    assert back_in_service(shard, since=1.0, commands_per_second=200) == 4.0
    assert back_in_service(shard, since=1.0, commands_per_second=1000) is None


# -- verdicts from a whole (made-up) scenario ------------------------------------------------

RATE = 1000  # requests a second, offered
FAULT, RESTORE, END = 4.0, 8.0, 10.0


def observed(neighbour_rate_during: float) -> Observed:
    """Four shards at 250 commands/s each from the offered 1000 requests/s; from the fault, the
    victim carries nothing and the three others ``neighbour_rate_during`` each."""
    record = Record(sent=[i / RATE for i in range(int(END * RATE))])
    samples: dict[str, list[CounterSample]] = {}
    for index in range(4):
        total, series = 0.0, []
        for step in range(int(END / 0.25) + 1):
            at = step * 0.25
            series.append(CounterSample(at, round(total) + step))  # + one INFO per sample
            if at < FAULT or at >= RESTORE:
                rate = 250.0
            else:
                rate = 0.0 if index == 0 else neighbour_rate_during
            total += rate * 0.25
        samples[f"shard-{index}"] = series
    timeline = Timeline(start=0.0, fault=FAULT, restore=RESTORE, restored=RESTORE, end=END)
    return Observed(
        "sidecar", "kill", "s0", "shard-0", timeline, record, samples, [], [], {}
    )  # fmt: skip


def test_neighbours_unchanged_when_the_failed_shards_keys_go_elsewhere() -> None:
    loads = shard_loads(observed(250.0), settle=1.0)
    assert loads["neighbours_unchanged"] is True
    assert loads["neighbours_largest_change"] == 0.0
    assert loads["noise_bound"] == NOISE_FLOOR
    assert set(loads["servers"]) == {"shard-1", "shard-2", "shard-3"}


def test_neighbours_changed_when_the_failed_shards_keys_rehash_onto_them() -> None:
    loads = shard_loads(observed(250.0 * 4 / 3), settle=1.0)
    assert loads["neighbours_unchanged"] is False
    assert loads["neighbours_largest_change"] == pytest.approx(1 / 3, abs=0.01)
    assert loads["servers"]["shard-1"]["ops_per_second_during"] == 333


def test_the_window_target_depends_on_the_fault() -> None:
    def result(fault: str, window: float) -> dict[str, object]:
        return {
            "fault": fault,
            "error_window_s": window,
            "reads": {"stale_total": 0},
            "loads": {
                "noise_bound": 0.05,
                "neighbours_largest_change": 0.01,
                "neighbours_unchanged": True,
            },
        }

    assert targets(result("kill", 0.25), 0.5)["error_window"]["met"] is True
    assert targets(result("kill", 0.26), 0.5)["error_window"]["met"] is False
    assert targets(result("stop", 0.99), 0.5)["error_window"]["met"] is True
    assert targets(result("stop", 1.01), 0.5)["error_window"]["met"] is False
    stale = {**result("stop", 0.1), "reads": {"stale_total": 1}}
    assert targets(stale, 0.5)["stale_reads"]["met"] is False
