"""The set-up commands clients send on their own are answered by the sidecar itself, and its
admin endpoint serves health and Prometheus metrics."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Fleet
from tests.support.resp import RawConnection

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.mark.parametrize("protocol", [2, 3])
def test_setup_commands(protocol: int, clean_fleet: Fleet) -> None:
    with RawConnection(clean_fleet.proxy.port) as connection:
        if protocol == 3:
            assert connection.call("HELLO", "3", "AUTH", "default", "any").startswith(b"%")
        else:
            assert connection.call("HELLO", "2").startswith(b"*")
        assert connection.call("HELLO", "4").startswith(b"-NOPROTO")
        assert connection.call("CLIENT", "SETINFO", "LIB-NAME", "cachefleet-test") == b"+OK\r\n"
        assert connection.call("CLIENT", "SETINFO", "LIB-VER", "1.0") == b"+OK\r\n"
        assert connection.call("CLIENT", "SETNAME", "me") == b"+OK\r\n"
        assert connection.call("CLIENT", "GETNAME") == b"$2\r\nme\r\n"
        assert connection.call("CLIENT", "ID").startswith(b":")
        info = connection.call("INFO")
        assert info[:1] in (b"$", b"="), info[:40]
        assert b"redis_version:" in info and b"loading:1" not in info
        assert connection.call("SELECT", "0") == b"+OK\r\n"
        assert connection.call("SELECT", "1").startswith(b"-")
        assert connection.call("PING") == b"+PONG\r\n"
        assert connection.call("PING", "hi") == b"$2\r\nhi\r\n"
        assert connection.call("ECHO", "x\r\ny") == b"$4\r\nx\r\ny\r\n"
        assert connection.call("COMMAND", "COUNT").startswith(b":")
        # The connection keeps the protocol it negotiated.
        connection.call("HSET", "hs:h", "f", "v")
        shape = b"%" if protocol == 3 else b"*"
        assert connection.call("HGETALL", "hs:h").startswith(shape)
        assert connection.call("QUIT") == b"+OK\r\n"
        received, closed = connection.read_until_closed(3.0)
        assert closed and received == b""


def test_admin_endpoint(clean_fleet: Fleet) -> None:
    proxy = clean_fleet.proxy
    with RawConnection(proxy.port) as connection:
        for i in range(20):
            connection.call("SET", f"adm:{i}", "v")
            connection.call("GET", f"adm:{i}")
    assert proxy.admin_get("/healthz")[0] == 200
    assert proxy.admin_get("/readyz")[0] == 200
    metrics = proxy.metrics()
    assert "# TYPE" in metrics
    names = {line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE")}
    assert any("request" in name for name in names), sorted(names)
    assert any("latency" in name or "seconds" in name for name in names), sorted(names)
