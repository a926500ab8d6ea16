"""The sidecar as a real subprocess, driven only through its command line and admin endpoint."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachefleet.config import PoolConfig, ShardEndpoint, SidecarConfig
from cachefleet.ring import RingAssignment, Shard, classic_ring

from tests.support.ports import free_port
from tests.support.processes import LocalServer, log_tail, spawn, stop, wait_until

READY_TIMEOUT = 30.0


def sidecar_command() -> list[str]:
    """How to run ``cachefleet``: the console script next to this interpreter, else ``-c``."""
    script = Path(sys.executable).with_name("cachefleet")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from cachefleet.cli import main; sys.exit(main())"]


def sidecar_config(
    shard_addresses: Sequence[str],
    listen_port: int | None = None,
    admin_port: int | None = None,
    pool_size: int = 1,
    **fields: Any,
) -> SidecarConfig:
    """A config whose ring is ``classic_ring`` over shards named by their addresses."""
    ring = classic_ring([Shard(address) for address in shard_addresses])
    return SidecarConfig(
        listen=f"127.0.0.1:{listen_port or free_port()}",
        admin_listen=f"127.0.0.1:{admin_port or free_port()}",
        shards=[ShardEndpoint(name=a, address=a) for a in shard_addresses],
        ring=RingAssignment.from_ring(ring),
        pool=PoolConfig(connections_per_shard=pool_size),
        **fields,
    )


def write_config(path: Path, config: SidecarConfig) -> None:
    """Replace the file atomically, as a ConfigMap update does, so no reader sees half of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(config.to_json())
    os.replace(temporary, path)


def _port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


@dataclass
class Sidecar(LocalServer):
    admin_port: int = 0
    config_path: Path | None = None

    @property
    def log(self) -> Path:
        return self.directory / "sidecar.log"

    def client(self, **kwargs: Any) -> Any:
        """A redis-py client talking to the sidecar (redis-py's defaults unless overridden)."""
        import redis

        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def admin_get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def ready(self) -> bool:
        try:
            return self.admin_get("/readyz")[0] == 200
        except OSError:
            return False

    def metrics(self) -> str:
        status, body = self.admin_get("/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}: {body[:200]}")
        return body


@contextlib.contextmanager
def start_sidecar(
    shards: Sequence[str] | None = None,
    *,
    config: SidecarConfig | None = None,
    pool_size: int | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Sidecar]:
    """Run ``cachefleet sidecar`` until the block ends; yields once /readyz answers 200.

    With ``shards`` (HOST:PORT addresses) it uses ``--listen/--shards/--admin``; with ``config``
    it writes the file into the sidecar's directory and uses ``--config`` (``config_path`` lets
    the test rewrite it to trigger a reload).
    """
    if (shards is None) == (config is None):
        raise ValueError("give either shards or config")
    directory = Path(tempfile.mkdtemp(prefix="cachefleet-sidecar-"))
    argv = [*sidecar_command(), "sidecar"]
    config_path: Path | None = None
    if config is not None:
        config_path = directory / "sidecar.json"
        write_config(config_path, config)
        argv += ["--config", str(config_path)]
        port, admin_port = _port_of(config.listen), _port_of(config.admin_listen)
    else:
        assert shards is not None
        port, admin_port = free_port(), free_port()
        argv += ["--listen", f"127.0.0.1:{port}", "--shards", ",".join(shards)]
        argv += ["--admin", f"127.0.0.1:{admin_port}"]
        if pool_size is not None:
            argv += ["--pool-size", str(pool_size)]
    argv += list(extra_args)
    log = directory / "sidecar.log"
    log.write_bytes(b"$ " + " ".join(argv).encode() + b"\n")
    process = spawn(argv, log, env)
    sidecar = Sidecar(port, directory, process, admin_port, config_path)
    try:
        wait_until(sidecar.ready, process, "cachefleet sidecar", log, READY_TIMEOUT)
        yield sidecar
    except BaseException:
        # A failing test shows what the sidecar said (pytest prints captured stderr).
        print(f"--- sidecar log tail ({log}) ---\n{log_tail(log)}", file=sys.stderr)
        raise
    finally:
        try:
            stop(process)
        finally:
            if os.environ.get("CACHEFLEET_KEEP_LOGS"):
                print(f"sidecar log kept in {log}", file=sys.stderr)
            else:
                shutil.rmtree(directory, ignore_errors=True)
