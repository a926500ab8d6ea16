"""twemproxy (Debian's ``nutcracker``) in front of real shards, from a generated YAML pool."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import LocalServer, port_accepts, spawn, stop, wait_until

READY_TIMEOUT = 10.0


@dataclass
class Nutcracker(LocalServer):
    stats_port: int = 0

    @property
    def log(self) -> Path:
        return self.directory / "nutcracker.log"


@dataclass(frozen=True)
class PoolOptions:
    """How the pool treats a failing server. The defaults keep every server in the ring (a
    failed server's keys fail until it is back); ``failure_limit`` and ``retry_timeout_ms``
    are twemproxy's own defaults and only matter with ``auto_eject_hosts``: that many failures
    in a row eject a server (its keys rehash onto the others) until ``retry_timeout_ms`` has
    passed, then it is tried again."""

    timeout_ms: int = 1000
    auto_eject_hosts: bool = False
    failure_limit: int = 2
    retry_timeout_ms: int = 30_000


def pool_yaml(port: int, shards: Sequence[str], options: PoolOptions | None = None) -> str:
    """One pool the way the issue asks: murmur hash, ketama, Redis protocol."""
    options = options or PoolOptions()
    servers = "\n".join(f"    - {address}:1 {address}" for address in shards)
    return (
        "cachefleet:\n"
        f"  listen: 127.0.0.1:{port}\n"
        "  hash: murmur\n"
        "  distribution: ketama\n"
        "  redis: true\n"
        f"  auto_eject_hosts: {'true' if options.auto_eject_hosts else 'false'}\n"
        f"  server_failure_limit: {options.failure_limit}\n"
        f"  server_retry_timeout: {options.retry_timeout_ms}\n"
        "  preconnect: true\n"
        f"  timeout: {options.timeout_ms}\n"
        "  servers:\n"
        f"{servers}\n"
    )


@contextlib.contextmanager
def start_nutcracker(
    shards: Sequence[str], options: PoolOptions | None = None, stats_interval_ms: int = 30_000
) -> Iterator[Nutcracker]:
    """Run nutcracker over ``shards`` (HOST:PORT) until the block ends. Its stats port reports
    counters aggregated every ``stats_interval_ms`` (nutcracker's default: 30 s)."""
    directory = Path(tempfile.mkdtemp(prefix="cachefleet-nutcracker-"))
    port, stats_port = free_port(), free_port()
    conf = directory / "nutcracker.yml"
    conf.write_text(pool_yaml(port, shards, options))
    log = directory / "nutcracker.log"
    argv = [
        "nutcracker",
        "--conf-file", str(conf),
        "--stats-port", str(stats_port),
        "--stats-addr", "127.0.0.1",
        "--stats-interval", str(stats_interval_ms),
        "--pid-file", str(directory / "nutcracker.pid"),
        "--output", str(log),
        "--verbose", "4",
    ]  # fmt: skip
    process = spawn(argv, directory / "stdout.log")
    proxy = Nutcracker(port, directory, process, stats_port)
    try:
        wait_until(lambda: port_accepts(port), process, "nutcracker", log, READY_TIMEOUT)
        yield proxy
    finally:
        try:
            stop(process)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
