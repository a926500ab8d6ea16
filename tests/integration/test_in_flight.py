"""Clients that vanish with requests in flight do not disturb anyone else's replies."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.integration.conftest import Fleet
from tests.support.resp import encode

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def test_disconnect_with_requests_in_flight(clean_fleet: Fleet) -> None:
    port = clean_fleet.proxy.port
    big = b"v" * 50_000
    with redis.Redis(port=port, protocol=2) as setup:
        setup.mset({f"big:{i}": big for i in range(20)})
    stop = threading.Event()
    failures: list[str] = []
    checked = [0]

    def bystander() -> None:
        client = redis.Redis(
            port=port, protocol=3, single_connection_client=True, retry=Retry(NoBackoff(), 0)
        )
        try:
            i = 0
            while not stop.is_set() or i < 300:
                key = f"mine:{i % 50}"
                client.set(key, i)
                got = client.mget([key, "big:0", key])
                if got != [str(i).encode(), big, str(i).encode()]:
                    failures.append(f"request {i}: {str(got)[:120]}")
                i += 1
            checked[0] = i
        except redis.RedisError as error:
            failures.append(f"{type(error).__name__}: {error}")
        finally:
            client.close()

    thread = threading.Thread(target=bystander, daemon=True)
    thread.start()
    try:
        pipeline = b"".join(encode("MGET", *(f"big:{j}" for j in range(20))) for _ in range(50))
        for n in range(60):
            with socket.create_connection(("127.0.0.1", port)) as leaver:
                leaver.sendall(pipeline if n % 2 else pipeline[: len(pipeline) // 2])
                if n % 3 == 0:
                    leaver.recv(1000)  # read a little, leave the rest in flight
                # Reset rather than a clean close, half of the time.
                if n % 2:
                    leaver.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert not failures, failures[:5]
    assert checked[0] >= 300
    assert clean_fleet.proxy.alive()
