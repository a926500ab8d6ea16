"""A client sending malformed frames gets an error (or its own connection closed); a client
working next to it at the same time never notices."""

from __future__ import annotations

import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.integration.conftest import Fleet
from tests.support.resp import RawConnection, split_replies

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Frames Redis itself answers with a protocol error and then closes the connection.
MALFORMED = [
    b"*2\r\n$3\r\nGET\r\n$abc\r\n",
    b"*1\r\n+PING\r\n",
    b"*x\r\n",
    b"*1\r\n$-5\r\n",
    b"*2\r\n$3\r\nGET\r\n:1\r\n",
    b"*1\r\n$999999999999\r\n",
    b"*999999999999\r\n",
    b"*" + b"9" * 70_000,
    b"*2\r\n$3\r\nGET\r\n$-\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n*1\r\n$1\r\nv\r\n",
]


def _served_alongside(port: int, stop: threading.Event, failures: list[str]) -> int:
    count = 0
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        protocol=2,
        single_connection_client=True,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=5,
    )
    try:
        for i in range(100_000):
            if stop.is_set() and i > 200:
                break
            try:
                client.set(f"bystander:{i % 100}", i)
                got = client.get(f"bystander:{i % 100}")
            except redis.RedisError as error:
                failures.append(f"request {i}: {error!r}")
                return count
            if got != str(i).encode():
                failures.append(f"request {i}: read {got!r}")
            count += 1
    finally:
        client.close()
    return count


def test_garbage_gets_an_error_and_bystanders_are_unaffected(clean_fleet: Fleet) -> None:
    port = clean_fleet.proxy.port
    stop = threading.Event()
    failures: list[str] = []
    served: list[int] = []
    bystander = threading.Thread(
        target=lambda: served.append(_served_alongside(port, stop, failures)), daemon=True
    )
    bystander.start()
    outcomes = []
    try:
        for payload in MALFORMED * 3:
            with RawConnection(port, timeout=5.0) as connection:
                connection.send(b"*1\r\n$4\r\nPING\r\n" + payload)
                received, closed = connection.read_until_closed(3.0)
            replies, rest = split_replies(received)
            assert replies[:1] == [b"+PONG\r\n"], f"{payload[:40]!r}: {received[:200]!r}"
            assert not rest, f"{payload[:40]!r}: a partial or invalid reply {rest[:80]!r}"
            errors = [r for r in replies[1:] if r.startswith(b"-")]
            outcomes.append((payload[:40], bool(errors), closed))
            assert errors or closed, (
                f"{payload[:40]!r} got neither an error nor a close: {replies[1:]!r}"
            )
    finally:
        stop.set()
        bystander.join(timeout=60)
    assert not bystander.is_alive(), "the bystander hung"
    assert not failures, f"the bystander was disturbed: {failures[:5]}"
    assert served and served[0] > 200
    with RawConnection(port) as fresh:
        assert fresh.call("PING") == b"+PONG\r\n"
