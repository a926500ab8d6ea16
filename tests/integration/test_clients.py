"""Real clients connect with their default settings and work: redis-py 8, redis-cli, ioredis.

Each client sends its own set-up commands on connect (``HELLO 3``, ``CLIENT SETINFO``, ``INFO``);
twemproxy drops all of these, the sidecar must answer them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.conftest import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NODE_SCRIPT = Path(__file__).with_name("clients") / "ioredis_check.js"
NODE_CACHE = Path(
    os.environ.get("CACHEFLEET_NODE_CACHE", Path.home() / ".cache" / "cachefleet-tests" / "node")
)


def test_redis_py_default_client(clean_fleet: Fleet) -> None:
    # No options at all: redis-py 8 opens with HELLO 3, CLIENT SETINFO and the rest.
    client = redis.Redis(host="127.0.0.1", port=clean_fleet.proxy.port)
    try:
        assert client.ping() is True
        assert client.set("py:k", "v") is True
        assert client.get("py:k") == b"v"
        client.hset("py:h", mapping={"a": "1", "b": "2"})
        assert client.hgetall("py:h") == {b"a": b"1", b"b": b"2"}
        client.zadd("py:z", {"x": 1.5, "y": 2})
        assert client.zrange("py:z", 0, -1, withscores=True) == [(b"x", 1.5), (b"y", 2.0)]
        assert client.echo("hello") == b"hello"
        assert client.client_setname("cachefleet-test") is True
        assert client.client_getname() in ("cachefleet-test", b"cachefleet-test")
        assert isinstance(client.client_id(), int)
        info = client.info()
        assert info.get("loading", 0) == 0
        assert client.execute_command("SELECT", "0") in (True, b"OK", "OK")
    finally:
        client.close()


def test_redis_py_resp2_client_and_protocol_switch(clean_fleet: Fleet) -> None:
    with redis.Redis(host="127.0.0.1", port=clean_fleet.proxy.port, protocol=2) as client:
        client.hset("py2:h", "f", "v")
        assert client.hgetall("py2:h") == {b"f": b"v"}
        hello = client.execute_command("HELLO", "2")
        assert hello, "HELLO 2 must answer the server description"
        assert client.hgetall("py2:h") == {b"f": b"v"}


def _redis_cli(port: int, *args: str, resp3: bool = False) -> str:
    argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *(["-3"] if resp3 else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_redis_cli(resp3: bool, clean_fleet: Fleet) -> None:
    proxy, direct = clean_fleet.proxy.port, clean_fleet.reference.port
    assert _redis_cli(proxy, "set", "cli:k", "v", resp3=resp3).strip() == "OK"
    assert _redis_cli(proxy, "get", "cli:k", resp3=resp3).strip() == "v"
    script = [
        ("hset", "cli:h", "a", "1", "b", "2"),
        ("hgetall", "cli:h"),
        ("zadd", "cli:z", "1.5", "x", "2", "y"),
        ("zrange", "cli:z", "0", "-1", "withscores"),
        ("zscore", "cli:z", "x"),
        ("mset", "cli:1", "a", "cli:2", "b"),
        ("mget", "cli:1", "cli:none", "cli:2"),
        ("get", "cli:none"),
        ("ping",),
    ]
    for command in script:
        got = _redis_cli(proxy, *command, resp3=resp3)
        want = _redis_cli(direct, *command, resp3=resp3)
        assert got == want, f"redis-cli {' '.join(command)}: sidecar {got!r} != redis {want!r}"


def _ioredis_dir(major: int) -> Path:
    """ioredis@major installed once into a cache directory outside the repository."""
    target = NODE_CACHE / f"ioredis{major}"
    if (target / "node_modules" / "ioredis" / "package.json").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so ioredis cannot be tested")
    target.mkdir(parents=True, exist_ok=True)
    (target / "package.json").write_text('{"name": "ioredis-check", "private": true}\n')
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", f"ioredis@{major}"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm install ioredis@{major} took over 240 s (no registry access?)")
    if done.returncode != 0:
        pytest.skip(f"npm install ioredis@{major} failed: {done.stderr.strip()[-300:]}")
    return target


@pytest.mark.parametrize("major", [5, 6])
def test_ioredis_default_settings(major: int, clean_fleet: Fleet) -> None:
    directory = _ioredis_dir(major)
    version = json.loads((directory / "node_modules/ioredis/package.json").read_text())["version"]
    assert version.startswith(f"{major}."), version
    done = subprocess.run(
        ["node", str(NODE_SCRIPT), str(clean_fleet.proxy.port)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "NODE_PATH": str(directory / "node_modules")},
    )
    assert done.stdout.strip(), f"ioredis {version} printed nothing: {done.stderr[-500:]}"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"], f"ioredis {version}: {report}"
    assert report["events"]["reconnecting"] == 0, f"ioredis {version} reconnected: {report}"
    results = report["results"]
    assert results["ping"] == "PONG"
    assert results["set"] == "OK"
    assert results["get"] == "v1"
    assert results["missing"] is None
    assert results["hset"] == 2
    assert results["hgetall"] == {"a": "1", "b": "2"}
    assert results["mset"] == "OK"
    assert results["mget"] == ["z", None, "x", "y"]
    assert results["zadd"] == 2
    assert results["zrange"] == ["p", "1.5", "q", "2"]
    assert results["del"] == 2
    assert results["pipeline"] == [1, 2, "2"]
