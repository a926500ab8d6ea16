"""Shards that need a password (read by the sidecar from a file) and clients that must AUTH."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from cachefleet.config import AuthConfig

from tests.support import RedisServer, Sidecar, sidecar_config, start_redis_servers, start_sidecar
from tests.support.resp import RawConnection

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SHARD_PASSWORD = "shard-secret"
CLIENT_PASSWORD = "client-secret"


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[RedisServer], Sidecar]]:
    secrets = tmp_path_factory.mktemp("secrets")
    shard_file, client_file = secrets / "shard-password", secrets / "client-password"
    # Mounted Secrets often end with a newline; the password is the text without it.
    shard_file.write_text(SHARD_PASSWORD + "\n")
    client_file.write_text(CLIENT_PASSWORD + "\n")
    with start_redis_servers(4, password=SHARD_PASSWORD) as shards:
        auth = AuthConfig(
            shard_password_file=str(shard_file), client_password_file=str(client_file)
        )
        config = sidecar_config([s.address for s in shards], auth=auth)
        with start_sidecar(config=config) as sidecar:
            yield shards, sidecar


def test_sidecar_authenticates_to_shards(guarded: tuple[list[RedisServer], Sidecar]) -> None:
    shards, sidecar = guarded
    with redis.Redis(port=sidecar.port, password=CLIENT_PASSWORD) as client:
        for i in range(40):
            client.set(f"auth:{i}", i)
        assert client.mget([f"auth:{i}" for i in range(40)]) == [str(i).encode() for i in range(40)]
    stored = 0
    for shard in shards:
        stored += shard.app_keys()
    assert stored == 40


def test_clients_must_authenticate(guarded: tuple[list[RedisServer], Sidecar]) -> None:
    _, sidecar = guarded
    with RawConnection(sidecar.port) as connection:
        assert connection.call("GET", "auth:1").startswith(b"-NOAUTH")
        assert connection.call("AUTH", "wrong").startswith(b"-WRONGPASS")
        assert connection.call("GET", "auth:1").startswith(b"-NOAUTH")
        assert connection.call("AUTH", CLIENT_PASSWORD) == b"+OK\r\n"
        assert not connection.call("GET", "auth:1").startswith(b"-")
    with RawConnection(sidecar.port) as connection:
        assert connection.call("HELLO", "3", "AUTH", "default", "wrong").startswith(b"-")
        assert connection.call("HELLO", "3", "AUTH", "default", CLIENT_PASSWORD).startswith(b"%")
        assert connection.call("PING") == b"+PONG\r\n"
    # redis-py 8's default client sends HELLO 3 AUTH when given a password.
    with redis.Redis(port=sidecar.port, password=CLIENT_PASSWORD) as client:
        assert client.ping() is True
    with pytest.raises(redis.AuthenticationError), redis.Redis(port=sidecar.port) as client:
        client.get("auth:1")
