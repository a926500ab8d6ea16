"""Real redis-server shards and an in-process sidecar in front of them, always torn down."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aredis
from cachefleet.config import PoolConfig, ShardEndpoint, SidecarConfig
from cachefleet.ring import RingAssignment, Shard, classic_ring
from cachefleet.sidecar import Sidecar

from tests.support.ports import free_port


@dataclass
class Shard_:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_shard(password: str | None = None) -> Shard_:
    directory = Path(tempfile.mkdtemp(prefix="cf-sidecar-test-"))
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory)]  # fmt: skip
    if password:
        argv += ["--requirepass", password]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard = Shard_(port, process, directory)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return shard
        except OSError:
            time.sleep(0.02)
    shard.stop()
    raise RuntimeError(f"redis-server on {port} did not start")


@pytest.fixture(scope="module")
def shards() -> Iterator[list[Shard_]]:
    started: list[Shard_] = []
    try:
        for _ in range(4):
            started.append(start_shard())
        yield started
    finally:
        for shard in started:
            shard.stop()


def make_config(addresses: list[str], pool_size: int = 1, **fields: object) -> SidecarConfig:
    ring = classic_ring([Shard(a) for a in addresses])
    fields.setdefault("pool", PoolConfig(connections_per_shard=pool_size))
    return SidecarConfig(
        listen=f"127.0.0.1:{free_port()}",
        admin_listen=f"127.0.0.1:{free_port()}",
        shards=[ShardEndpoint(name=a, address=a) for a in addresses],
        ring=RingAssignment.from_ring(ring),
        **fields,  # type: ignore[arg-type]
    )


def flush(shards: list[Shard_]) -> None:
    """Empty the shards and zero their command counters, so a test sees only its own."""
    for shard in shards:
        for command in (["FLUSHALL"], ["CONFIG", "RESETSTAT"]):
            subprocess.run(
                ["redis-cli", "-p", str(shard.port), *command],
                capture_output=True, check=True, timeout=10,
            )  # fmt: skip


@pytest.fixture
def flushed(shards: list[Shard_]) -> list[Shard_]:
    flush(shards)
    return shards


@pytest.fixture
async def sidecar(flushed: list[Shard_]) -> AsyncIterator[Sidecar]:
    app = await start_sidecar(lambda: make_config([s.address for s in flushed]))
    try:
        yield app
    finally:
        await app.stop()


async def start_sidecar(build: Callable[[], SidecarConfig]) -> Sidecar:
    """Start on fresh free ports, retrying when another process grabbed one meanwhile."""
    for attempt in range(5):
        app = Sidecar(build())
        try:
            await app.start()
            return app
        except OSError:
            await app.stop()
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


async def with_sidecar(
    build: Callable[[], SidecarConfig],
    body: Callable[[Sidecar, aredis.Redis], Awaitable[object]],
) -> None:
    """Run ``body`` with a started sidecar and a client of it, both closed whatever happens."""
    app = await start_sidecar(build)
    client = aredis.Redis(port=app.listen_port, protocol=2)
    try:
        await body(app, client)
    finally:
        await client.aclose()
        await app.stop()


async def until(check: Callable[[], Awaitable[object]], timeout: float = 5.0) -> float:
    """Poll ``check`` until it answers something true; the seconds that took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await check():
        if loop.time() - started > timeout:
            raise AssertionError(f"condition not met in {timeout} s")
        await asyncio.sleep(0.005)
    return loop.time() - started


@pytest.fixture
def tmp_secret(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "secret"
    path.write_text("s3cret\n")
    os.chmod(path, 0o600)
    yield path
