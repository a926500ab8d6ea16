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


def pool_yaml(port: int, shards: Sequence[str]) -> str:
    """One pool the way the issue asks: murmur hash, ketama, Redis protocol."""
    servers = "\n".join(f"    - {address}:1 {address}" for address in shards)
    return (
        "cachefleet:\n"
        f"  listen: 127.0.0.1:{port}\n"
        "  hash: murmur\n"
        "  distribution: ketama\n"
        "  redis: true\n"
        "  auto_eject_hosts: false\n"
        "  preconnect: true\n"
        "  timeout: 1000\n"
        "  servers:\n"
        f"{servers}\n"
    )


@contextlib.contextmanager
def start_nutcracker(shards: Sequence[str]) -> Iterator[Nutcracker]:
    """Run nutcracker over ``shards`` (HOST:PORT) until the block ends."""
    directory = Path(tempfile.mkdtemp(prefix="cachefleet-nutcracker-"))
    port, stats_port = free_port(), free_port()
    conf = directory / "nutcracker.yml"
    conf.write_text(pool_yaml(port, shards))
    log = directory / "nutcracker.log"
    argv = [
        "nutcracker",
        "--conf-file", str(conf),
        "--stats-port", str(stats_port),
        "--stats-addr", "127.0.0.1",
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
