"""Real redis-server processes on free 127.0.0.1 ports, each in its own temporary directory."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachefleet_operator.local.processes import answers_ping

from tests.support.ports import free_port
from tests.support.processes import LocalServer, ProcessFailed, spawn, stop, wait_until

READY_TIMEOUT = 10.0
OWN = b"cachefleet:"  # the prefix of every key the sidecars keep for themselves


@dataclass
class RedisServer(LocalServer):
    """``address`` (HOST:PORT) is also the shard's name on a ring built with ``--shards``."""

    password: str | None = None

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def client(self, **kwargs: Any) -> Any:
        """A redis-py client talking to this server directly (RESP2 unless told otherwise)."""
        import redis

        kwargs.setdefault("protocol", 2)
        return redis.Redis(host=self.host, port=self.port, password=self.password, **kwargs)

    def app_keys(self) -> int:
        """Keys here other than the sidecars' own bookkeeping (``cachefleet:*``: heartbeats,
        warm-up counters, the gutter's journal, tombstones)."""
        with self.client() as client:
            return sum(1 for key in client.scan_iter(count=1000) if not key.startswith(OWN))

    def answers_ping(self) -> bool:
        return answers_ping(self.port, self.password)


def start_redis(
    password: str | None = None,
    extra: tuple[str, ...] = (),
    port: int | None = None,
    directory: Path | None = None,
) -> RedisServer:
    """Start one redis-server and wait until it answers PING. The caller must stop it."""
    directory = directory or Path(tempfile.mkdtemp(prefix="cachefleet-redis-"))
    port = port or free_port()
    argv = [
        "redis-server",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--daemonize", "no",
        "--logfile", "",
    ]  # fmt: skip
    if password is not None:
        argv += ["--requirepass", password]
    argv += list(extra)
    server = RedisServer(port, directory, spawn(argv, directory / "redis.log"), password)
    try:
        what = f"redis-server :{port}"
        wait_until(server.answers_ping, server.process, what, server.log, READY_TIMEOUT)
    except BaseException:
        stop_redis(server)
        raise
    return server


def restart_redis(server: RedisServer, extra: tuple[str, ...] = ()) -> None:
    """A killed server started again, empty, on the same port (``server`` now points at it)."""
    try:
        server.process.wait(timeout=5)  # reaped: its port is free
    except subprocess.TimeoutExpired:
        raise ProcessFailed(f"redis-server :{server.port} is still running") from None
    fresh = start_redis(server.password, extra, server.port, server.directory)
    server.process = fresh.process


def stop_redis(server: RedisServer) -> None:
    try:
        stop(server.process)
    finally:
        shutil.rmtree(server.directory, ignore_errors=True)


@contextlib.contextmanager
def start_redis_servers(
    count: int, password: str | None = None, extra: tuple[str, ...] = ()
) -> Iterator[list[RedisServer]]:
    """``count`` redis-servers, all answering PING; every one is killed on exit."""
    servers: list[RedisServer] = []
    try:
        for _ in range(count):
            servers.append(start_redis(password, extra))
        yield servers
    finally:
        errors: list[BaseException] = []
        for server in servers:
            try:
                stop_redis(server)
            except BaseException as error:  # keep stopping the others
                errors.append(error)
        if errors:
            raise ProcessFailed(f"could not stop {len(errors)} redis-server(s): {errors[0]!r}")
