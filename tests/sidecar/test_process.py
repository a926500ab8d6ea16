"""``cachefleet sidecar`` as a real process: flags, config file reloads, admin, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cachefleet.config import SidecarConfig

from .conftest import Shard_, free_port, make_config

pytestmark = pytest.mark.integration

CACHEFLEET = [str(Path(sys.executable).with_name("cachefleet"))]


def admin(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def wait_ready(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "sidecar exited"
        try:
            if admin(port, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("sidecar never became ready")


def run(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CACHEFLEET, "sidecar", *argv], stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_flags_serve_and_sigterm_exits_zero(
    shards: list[Shard_], tmp_path: Path, stopper: list[subprocess.Popen[bytes]]
) -> None:
    listen, admin_port = free_port(), free_port()
    process = run(
        ["--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin_port}",
         "--shards", ",".join(s.address for s in shards), "--pool-size", "2"],
        tmp_path / "log",
    )  # fmt: skip
    stopper.append(process)
    wait_ready(process, admin_port)
    client = redis.Redis(port=listen)  # redis-py 8 defaults: HELLO 3, CLIENT SETINFO
    assert client.set("p", "1")
    assert client.get("p") == b"1"
    assert client.hgetall("nohash") == {}
    client.close()
    status, metrics = admin(admin_port, "/metrics")
    assert status == 200
    assert 'cachefleet_sidecar_requests_total{command="set",shard=' in metrics
    assert "cachefleet_sidecar_backend_connections" in metrics
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0


def test_config_file_reload_and_invalid_file_keeps_serving(
    shards: list[Shard_], tmp_path: Path, stopper: list[subprocess.Popen[bytes]]
) -> None:
    config = make_config([s.address for s in shards[:2]]).model_copy(
        update={"config_version": "one"}
    )
    path = tmp_path / "sidecar.json"

    def write(text: str) -> None:
        temporary = tmp_path / ".tmp"
        temporary.write_text(text)
        os.replace(temporary, path)

    write(config.to_json())
    process = run(["--config", str(path)], tmp_path / "log")
    stopper.append(process)
    admin_port = int(config.admin_listen.rpartition(":")[2])
    wait_ready(process, admin_port)
    client = redis.Redis(port=int(config.listen.rpartition(":")[2]), protocol=2)
    assert client.set("x", "1")

    write("{not json")
    time.sleep(2.5)
    assert client.get("x") == b"1"
    assert 'result="rejected"} 1.0' in admin(admin_port, "/metrics")[1]

    bigger = make_config([s.address for s in shards]).model_copy(
        update={
            "listen": config.listen,
            "admin_listen": config.admin_listen,
            "config_version": "two",
        }
    )
    write(bigger.to_json())
    deadline = time.monotonic() + 10
    while 'version="two"' not in admin(admin_port, "/metrics")[1]:
        assert time.monotonic() < deadline, "reload not applied"
        time.sleep(0.2)
    ring = bigger.ring.to_ring()
    key = next(
        f"k{i}" for i in range(1000) if ring.shard_for(f"k{i}".encode()) == shards[3].address
    )
    assert client.set(key, "v")
    assert redis.Redis(port=shards[3].port).get(key) == b"v"
    client.close()
    assert "invalid config" in (tmp_path / "log").read_text()


def test_bad_flags_are_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CACHEFLEET, "sidecar", "--shards", "nohostport"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not HOST:PORT" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"shards": []}))
    result = subprocess.run(
        [*CACHEFLEET, "sidecar", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "invalid config" in result.stderr
    assert SidecarConfig  # the schema module is the contract the file is checked against
