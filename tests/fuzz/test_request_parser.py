"""Fuzzing the sidecar's request parser over real sockets.

Whatever arrives, the sidecar answers with valid replies (errors for what it cannot parse) or
closes that one connection; it never crashes, and it keeps serving fresh connections.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from cachefleet.ring import Shard, classic_ring
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import CAP
from tests.support import RedisServer, Sidecar, rss_kib, start_sidecar
from tests.support.garbage import VALID, huge_lengths, mutate, soak
from tests.support.resp import RawConnection, encode, split_replies

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# No shrinking: every failing example costs seconds of socket time-outs, and the raw payload in
# the report is already small enough to read.
FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _still_serving(sidecar: Sidecar, after: bytes) -> None:
    assert sidecar.alive(), f"the sidecar died on {after[:60]!r}"
    try:
        with RawConnection(sidecar.port, timeout=2.0) as fresh:
            reply = fresh.call("PING")
    except OSError as error:
        raise AssertionError(
            f"the sidecar stopped serving after {after[:60]!r}: {error!r}"
        ) from None
    assert reply == b"+PONG\r\n", f"after {after[:60]!r} a fresh PING got {reply!r}"


def _abuse(sidecar: Sidecar, payload: bytes, wait: float = 2.0) -> list[bytes]:
    """Send ``payload`` then end our side; returns the replies. Fails on invalid output."""
    with RawConnection(sidecar.port) as connection:
        try:
            connection.send(payload)
            connection.sock.shutdown(1)  # SHUT_WR: the sidecar sees the end of the request
        except (BrokenPipeError, ConnectionResetError):
            pass  # it already closed on us: allowed
        received, closed = connection.read_until_closed(wait)
    _still_serving(sidecar, payload)
    replies, rest = split_replies(received)
    assert not rest, f"{payload[:60]!r}: invalid or cut reply {rest[:100]!r}"
    assert closed, f"{payload[:60]!r}: connection still open {wait}s after our end"
    return replies


@FUZZ
@given(payload=st.binary(min_size=1, max_size=4096))
def test_random_bytes(sidecar: Sidecar, payload: bytes) -> None:
    _abuse(sidecar, payload)


@FUZZ
@given(
    frames=st.lists(st.sampled_from(VALID), min_size=1, max_size=6),
    seed=st.integers(0, 2**32),
    resp3=st.booleans(),
)
def test_mutated_frames(sidecar: Sidecar, frames: list[bytes], seed: int, resp3: bool) -> None:
    rng = random.Random(seed)
    payload = b"".join(mutate(frame, rng) if rng.random() < 0.5 else frame for frame in frames)
    # On a RESP3 connection the sidecar's own replies (errors included) take RESP3 shapes.
    _abuse(sidecar, (encode("HELLO", "3") if resp3 else b"") + payload)


@FUZZ
@given(key=st.binary(min_size=0, max_size=300), value=st.binary(max_size=3000))
def test_binary_keys_and_values(
    sidecar: Sidecar, shards: list[RedisServer], key: bytes, value: bytes
) -> None:
    with RawConnection(sidecar.port) as connection:
        assert connection.call("SET", key, value) == b"+OK\r\n"
        assert connection.call("GET", key) == b"$%d\r\n%s\r\n" % (len(value), value)
        assert connection.call("MGET", key, b"\x00" + key) == (
            b"*2\r\n$%d\r\n%s\r\n$-1\r\n" % (len(value), value)
        )
    owner = classic_ring([Shard(s.address) for s in shards]).shard_for(key)
    for shard in shards:
        with shard.client() as direct:
            assert direct.exists(key) == (shard.address == owner)
            direct.delete(key)


def test_frames_split_at_every_byte(sidecar: Sidecar) -> None:
    # Replies must be the same whichever byte the pipeline is cut at.
    pipeline = b"".join(
        [
            encode("SET", "split:k", "a value\r\nwith CRLF"),
            encode("GET", "split:k"),
            encode("MGET", "split:k", "split:none", "split:k"),
            encode("DEL", "split:h"),
            encode("HSET", "split:h", "f", b"\x00\xff"),
            encode("HGETALL", "split:h"),
            encode("PING"),
        ]
    )
    replies_expected = 7
    with RawConnection(sidecar.port) as connection:
        connection.send(pipeline)  # the first run creates what later runs find
        connection.read_replies(replies_expected)
        connection.send(pipeline)
        expected = connection.read_replies(replies_expected)
        for cut in range(1, len(pipeline)):
            connection.send(pipeline[:cut])
            time.sleep(0.001)  # separate TCP segments, so the sidecar sees a partial frame
            connection.send(pipeline[cut:])
            assert connection.read_replies(replies_expected) == expected, f"split at byte {cut}"
        for byte in pipeline:  # one byte at a time
            connection.send(bytes([byte]))
        assert connection.read_replies(replies_expected) == expected


def test_huge_declared_lengths(sidecar: Sidecar) -> None:
    rss_before = rss_kib(sidecar.pid)
    for payload in huge_lengths(CAP):
        with RawConnection(sidecar.port) as connection:
            connection.send(payload)
            received, closed = connection.read_until_closed(3.0)
        replies, rest = split_replies(received)
        assert not rest, f"{payload[:50]!r}: invalid reply {rest[:80]!r}"
        errors = [reply for reply in replies if reply.startswith(b"-")]
        assert errors or closed, f"{payload[:50]!r}: neither an error nor a close"
        _still_serving(sidecar, payload)
    growth = rss_kib(sidecar.pid) - rss_before
    assert growth < 32 * 1024, f"RSS grew {growth} KiB on declared lengths alone"


def test_request_above_the_cap_is_refused_while_streaming(sidecar: Sidecar) -> None:
    """A SET whose value really is 4x the cap: refused before or once the cap is passed."""
    value_size = CAP * 4
    header = b"*3\r\n$3\r\nSET\r\n$8\r\nbig:over\r\n$%d\r\n" % value_size
    chunk = b"x" * 65536
    sent = 0
    with RawConnection(sidecar.port, timeout=10.0) as connection:
        try:
            connection.send(header)
            while sent < value_size:
                connection.send(chunk)
                sent += len(chunk)
            connection.send(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: allowed
        received, closed = connection.read_until_closed(3.0)
    replies, rest = split_replies(received)
    assert not rest
    assert any(r.startswith(b"-") for r in replies) or closed, "an over-cap request was accepted"
    assert not any(r == b"+OK\r\n" for r in replies), "the over-cap SET was executed"
    with RawConnection(sidecar.port) as fresh:
        assert fresh.call("EXISTS", "big:over") == b":0\r\n"
        under = b"y" * (CAP // 2)
        assert fresh.call("SET", "big:under", under) == b"+OK\r\n"
        assert fresh.call("STRLEN", "big:under") == b":%d\r\n" % len(under)


def test_a_few_seconds_of_garbage_keeps_memory_flat(sidecar: Sidecar) -> None:
    asyncio.run(soak(sidecar.port, seconds=1.0, parallel=8, seed=1, cap=CAP))  # warm-up
    rss_warm = rss_kib(sidecar.pid)
    stats = asyncio.run(soak(sidecar.port, seconds=3.0, parallel=8, seed=2, cap=CAP))
    rss_after = rss_kib(sidecar.pid)
    assert sidecar.alive()
    assert stats.connections > 50, stats
    assert stats.invalid_replies == 0, stats.examples
    assert rss_after - rss_warm < 16 * 1024, f"RSS {rss_warm} -> {rss_after} KiB in 3 s of garbage"
    with RawConnection(sidecar.port) as fresh:
        assert fresh.call("PING") == b"+PONG\r\n"


def test_default_cap_is_512_mib(shards: list[RedisServer]) -> None:
    """Without a configured cap: 512 MiB + 1 is refused at once, a 4 MiB value goes through."""
    with start_sidecar([s.address for s in shards]) as default:
        with RawConnection(default.port) as connection:
            over = 512 * 1024 * 1024 + 1
            connection.send(b"*3\r\n$3\r\nSET\r\n$7\r\ncap:big\r\n$%d\r\n" % over)
            received, closed = connection.read_until_closed(3.0)
        replies, rest = split_replies(received)
        assert not rest
        assert any(r.startswith(b"-") for r in replies) or closed, "512 MiB + 1 was not refused"
        with RawConnection(default.port, timeout=20.0) as connection:
            value = b"z" * (4 * 1024 * 1024)
            assert connection.call("SET", "cap:ok", value) == b"+OK\r\n"
            assert connection.call("STRLEN", "cap:ok") == b":%d\r\n" % len(value)
