"""The processes a local fleet runs: redis-server per shard and gutter member, and the sidecar.

Each lives in its own directory, in its own process group (so a Ctrl-C at the terminal reaches
the fleet's owner, which then stops them in order), and is always stopped and reaped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

READY_SECONDS = 20.0


class LocalError(Exception):
    """Something the local fleet cannot do, in words for the person who ran it."""


# Every port free_port has handed out: the kernel may offer a port again until something binds
# it, and the demo asks for several before it starts anything.
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, never the same one twice in this process."""
    with _handed_out_lock:
        for _ in range(100):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise LocalError("no free port on 127.0.0.1 that was not handed out already (100 tries)")


def check_port_free(port: int, what: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            raise LocalError(
                f"port {port} for {what} is in use ({error.strerror}); choose another"
            ) from None


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise LocalError(
            "redis-server is not installed: install Debian's redis-server package "
            "(apt-get install redis-server), or run `make demo`, which installs it"
        )
    return found


def answers_ping(port: int, password: str | None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            request = b"PING\r\n"
            if password is not None:
                secret = password.encode()
                request = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret) + request
            sock.sendall(request)
            reply = b""
            while not reply.endswith(b"+PONG\r\n"):
                chunk = sock.recv(256)
                if not chunk or chunk.startswith(b"-"):
                    return False
                reply += chunk
            return True
    except OSError:
        return False


@dataclass
class Process:
    name: str
    directory: Path
    popen: subprocess.Popen[bytes] = field(repr=False)

    @property
    def log(self) -> Path:
        return self.directory / "log"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (SIGCONT first, in case it was stopped), then SIGKILL; always reaped."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGCONT)
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout=grace)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        self.popen.wait(timeout=10)


def spawn(
    name: str, argv: list[str], directory: Path, env: dict[str, str] | None = None
) -> Process:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "log", "ab") as out:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
        )
    return Process(name, directory, popen)


def wait_ready(process: Process, ready: Callable[[], bool], timeout: float = READY_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not process.alive():
            raise LocalError(f"{process.name} exited:\n{process.log_tail()}")
        if time.monotonic() > deadline:
            process.stop()
            raise LocalError(f"{process.name} not ready after {timeout:g} s:\n{process.log_tail()}")
        time.sleep(0.02)


@dataclass
class RedisProcess(Process):
    port: int = 0
    password: str | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def start_redis(
    name: str, conf: str, directory: Path, password: str | None, port: int | None = None
) -> RedisProcess:
    """redis-server with the operator's redis.conf for its role, made local: this machine's
    loopback, a port of its own, its own directory, the fleet's password."""
    binary = redis_server_binary()
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    local = [
        f"port {port}",
        "bind 127.0.0.1",
        f'dir "{directory}"',
        'logfile ""',
        "daemonize no",
    ]
    if password is not None:
        escaped = password.replace("\\", "\\\\").replace('"', '\\"')
        local.append(f'requirepass "{escaped}"')
    # Redis checks some directives as it reads them (dir must exist): drop what is replaced.
    replaced = {line.split()[0] for line in local}
    kept = [line for line in conf.splitlines() if (line.split() or [""])[0] not in replaced]
    path = directory / "redis.conf"
    path.write_text("\n".join([*kept, *local]) + "\n")
    path.chmod(0o600)
    base = spawn(name, [binary, str(path)], directory)
    process = RedisProcess(base.name, base.directory, base.popen, port, password)
    wait_ready(process, lambda: answers_ping(port, password))
    return process


def sidecar_command() -> list[str]:
    """``cachefleet`` next to this interpreter, else this interpreter running the CLI."""
    script = Path(sys.executable).with_name("cachefleet")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cachefleet"]


def start_sidecar(config: Path, admin_port: int, directory: Path) -> Process:
    process = spawn(
        "cachefleet sidecar", [*sidecar_command(), "sidecar", "--config", str(config)], directory
    )

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", admin_port), timeout=0.5) as sock:
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    wait_ready(process, ready)
    return process
