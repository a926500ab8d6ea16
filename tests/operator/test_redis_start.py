"""The shard containers' start script and probe, run for real against redis-server on loopback.

No kubelet runs pods in the e2e tests, so this is where the command the StatefulSet gives Redis
is proven: the password (even one with quotes and backslashes) from the environment, the
redis.conf from the ConfigMap, a replica following its primary, and the readiness probe.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cachefleet_operator.children.redis_config import SHARD_KEY

from tests.operator.fleet import Fleet, cache_cluster
from tests.support.ports import free_port
from tests.support.processes import port_accepts, spawn, stop, wait_until

pytestmark = pytest.mark.integration

PASSWORD = 'p@ss "wo\\rd" $HOME'


def _shard(spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    fleet = Fleet(cache_cluster(name="cache", **spec))
    plan = fleet.plan()
    by_key = {(m["kind"], m["metadata"]["name"]): m for m in plan.apply}
    container = by_key[("StatefulSet", "cache-shard-0")]["spec"]["template"]["spec"]["containers"][
        0
    ]
    return container, by_key[("ConfigMap", "cache-redis")]["data"][SHARD_KEY]


class Started:
    def __init__(self, container: dict[str, Any], conf: str, workdir: Path, **env: str):
        self.port = free_port()
        workdir.mkdir()
        local_conf = "\n".join(
            line for line in conf.splitlines() if not line.startswith(("port ", "bind ", "dir "))
        )
        local_conf += f"\nport {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
        (workdir / SHARD_KEY).write_text(local_conf)
        self.env = {"CONFIG_FILE": str(workdir / SHARD_KEY), "TMPDIR": str(workdir), **env}
        self.log = workdir / "redis.log"
        self.process = spawn(container["command"], self.log, self.env)
        wait_until(lambda: port_accepts(self.port), self.process, "redis", self.log, 10)

    def probe(self, container: dict[str, Any]) -> int:
        command = container["readinessProbe"]["exec"]["command"]
        command = [part.replace("-p 6379", f"-p {self.port}") for part in command]
        env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in self.env.items() if k != "PATH"}}
        return subprocess.run(command, env=env, timeout=10, check=False).returncode


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Started]]:
    started: list[Started] = []
    yield started
    for server in started:
        stop(server.process)


def test_primary_and_replica_start_with_the_password_and_pass_the_probe(
    servers: list[Started], tmp_path: Path
) -> None:
    # No 5 s diskless-sync delay: the replica syncs at once (the setting passes through as is).
    redis_spec = {"maxmemory": "32mb", "extraConfig": {"repl-diskless-sync-delay": "0"}}
    container, conf = _shard({"shards": 1, "redis": redis_spec})
    env = {"REDIS_PASSWORD": PASSWORD, "REDISCLI_AUTH": PASSWORD}
    primary = Started(container, conf, tmp_path / "p", POD_NAME="cache-shard-0-0", **env)
    servers.append(primary)

    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=primary.port, protocol=2).ping()
    client = redis.Redis(port=primary.port, password=PASSWORD, protocol=2)
    assert client.config_get("maxmemory") == {"maxmemory": str(32 * 1024 * 1024)}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    assert client.config_get("save") == {"save": ""}
    client.set("k", "v")
    assert primary.probe(container) == 0

    replica = Started(
        container,
        conf,
        tmp_path / "r",
        POD_NAME="cache-shard-0-1",
        PRIMARY_HOST="127.0.0.1",
        PRIMARY_PORT=str(primary.port),
        **env,
    )
    servers.append(replica)
    follower = redis.Redis(port=replica.port, password=PASSWORD, protocol=2)
    for _ in range(200):
        if follower.info("replication").get("master_link_status") == "up":
            break
        subprocess.run(["sleep", "0.05"], check=True)
    assert follower.info("replication")["role"] == "slave"
    assert follower.info("replication")["master_link_status"] == "up"


def test_the_probe_fails_without_the_right_password(servers: list[Started], tmp_path: Path) -> None:
    container, conf = _shard({"shards": 1})
    server = Started(
        container, conf, tmp_path / "p", POD_NAME="cache-shard-0-0", REDIS_PASSWORD=PASSWORD
    )
    servers.append(server)
    server.env["REDISCLI_AUTH"] = "wrong"
    assert server.probe(container) != 0
    server.env["REDISCLI_AUTH"] = PASSWORD
    assert server.probe(container) == 0


def test_without_auth_no_password_is_asked(servers: list[Started], tmp_path: Path) -> None:
    container, conf = _shard({"shards": 1, "auth": {"enabled": False}})
    server = Started(container, conf, tmp_path / "p", POD_NAME="cache-shard-0-0")
    servers.append(server)
    assert redis.Redis(port=server.port, protocol=2).ping()
    assert server.probe(container) == 0
