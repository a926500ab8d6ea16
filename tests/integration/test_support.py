"""The harness keeps its promises: processes answer when handed over and are gone afterwards,
also when the body fails."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support import start_nutcracker, start_redis_servers
from tests.support.resp import RawConnection

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_servers_are_killed_even_when_the_body_fails() -> None:
    pids: list[int] = []
    directories = []
    with pytest.raises(RuntimeError, match="body failed"), start_redis_servers(3) as servers:
        addresses = [s.address for s in servers]
        assert len(set(addresses)) == 3
        assert all(a.startswith("127.0.0.1:") for a in addresses)
        pids += [s.pid for s in servers]
        directories += [s.directory for s in servers]
        with start_nutcracker(addresses) as proxy:
            pids.append(proxy.pid)
            directories.append(proxy.directory)
            with RawConnection(proxy.port) as connection:
                assert connection.call("SET", "harness", "1") == b"+OK\r\n"
            raise RuntimeError("body failed")
    # Stopped and reaped (a zombie would still answer kill 0), their directories removed.
    assert all(_gone(pid) for pid in pids)
    assert not any(directory.exists() for directory in directories)


def test_password_protected_servers() -> None:
    with start_redis_servers(1, password="s3cret") as (server,):
        with RawConnection(server.port) as connection:
            assert connection.call("GET", "k").startswith(b"-NOAUTH")
        with server.client() as client:
            assert client.ping() is True
    assert _gone(server.pid)


def test_a_stopped_server_is_woken_to_take_its_sigterm() -> None:
    """A hung (SIGSTOPped) shard is how failover tests fail one; stopping it must not wait out
    the grace period and SIGKILL it."""
    with start_redis_servers(1) as (server,):
        server.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
    assert server.process.returncode == 0  # redis-server's own SIGTERM shutdown, not -SIGKILL
    assert time.monotonic() - started < 2.5
