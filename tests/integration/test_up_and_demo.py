"""``cachefleet up`` and ``cachefleet demo`` as a person runs them: real processes, a signal at
the end, and nothing left running afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pytest
import redis
import yaml

from tests.support import free_port, sidecar_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def leftovers(directory: Path, besides: int | None = None) -> list[str]:
    """Processes started in ``directory`` or naming it (redis-servers retitle themselves, so
    their working directory is what gives them away), other than this test and ``besides``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), besides):
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if cwd.startswith(str(directory)) or str(directory) in command:
            found.append(f"{entry.name} {command}")
    return found


class Output:
    """A child's stdout read line by line on a thread, so a test can wait for a line and still
    see everything the child printed once it has exited."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.process = process
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> list[str]:
        """Every line so far once one contains ``text``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(
                        f"no line with {text!r} in {timeout:g} s; got:\n" + "\n".join(self.lines)
                    )
                self.changed.wait(min(left, 0.5))
            return list(self.lines)

    def finish(self, timeout: float) -> str:
        self.process.wait(timeout)
        self.reader.join(timeout)
        return "\n".join(self.lines)


def manifest(shards: int) -> dict[str, object]:
    return {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "CacheCluster",
        "metadata": {"name": "uptest"},
        "spec": {
            "shards": shards,
            "warmUp": {
                "steps": [50, 100],
                "stepSeconds": 1,
                "graceSeconds": 2,
                "cutoverHitRatio": 0.5,
                "timeoutSeconds": 20,
            },
        },
    }


def test_up_runs_a_manifest_follows_an_edit_and_stops_everything(tmp_path: Path) -> None:
    path = tmp_path / "cc.yaml"
    path.write_text(yaml.safe_dump(manifest(3)))
    port, admin = free_port(), free_port()
    work = tmp_path / "fleet"
    process = subprocess.Popen(
        [
            *sidecar_command(),
            "up",
            str(path),
            "--port",
            str(port),
            "--admin-port",
            str(admin),
            "--dir",
            str(work),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    try:
        output.wait_for("ready: connect to", 90)
        client = redis.Redis(port=port, protocol=2)
        client.set("hello", "world")
        assert client.get("hello") == b"world"
        started = leftovers(work, besides=process.pid)
        assert len(started) == 5, started  # three shards, the gutter, the sidecar
        path.write_text(yaml.safe_dump(manifest(4)))  # the same change kubectl apply makes
        lines = output.wait_for("WarmUpComplete", 120)
        assert any("CapacityChange" in line and "3 → 4" in line for line in lines)
        assert client.get("hello") in (b"world", None)  # moved keys may miss, never go wrong
        client.close()
    finally:
        process.send_signal(signal.SIGINT)
        text = output.finish(60)
    assert process.returncode == 0, text
    assert "stopped: every process this fleet started is gone" in text
    assert leftovers(work) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"shards": 0}, "spec.shards"),
        ({"shards": 3, "redis": {"extraConfig": {"port": "1"}}}, "port"),
    ],
)
def test_up_refuses_what_the_operator_refuses(
    tmp_path: Path, spec: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**manifest(3), "spec": spec}))
    done = subprocess.run(
        [*sidecar_command(), "up", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "cachefleet up: error: CacheCluster uptest is invalid" in done.stderr
    assert message in done.stderr


def test_up_names_a_port_in_use_and_a_missing_redis_server(tmp_path: Path) -> None:
    path = tmp_path / "cc.yaml"
    path.write_text(yaml.safe_dump(manifest(3)))
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        done = subprocess.run(
            [*sidecar_command(), "up", str(path), "--port", str(busy)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2 and f"port {busy} for the sidecar is in use" in done.stderr
    bin_dir = Path(sidecar_command()[0]).parent
    env = {**os.environ, "PATH": str(bin_dir)}  # the venv's commands, no redis-server
    done = subprocess.run(
        [
            *sidecar_command(),
            "up",
            str(path),
            "--port",
            str(free_port()),
            "--admin-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2 and "redis-server is not installed" in done.stderr


def test_the_demo_tells_its_story_and_leaves_nothing_running(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    done = subprocess.run(  # a relative --dir, as `make demo` gives it
        [*sidecar_command(), "demo", "--quick", "--dir", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for act in ("1. steady traffic:", "2. a celebrity key:", "3. shard-", "4. 4 → 5 shards:"):
        assert act in out, out
    assert "0 stale reads since the kill" in out and "; 0 stale reads" in out
    assert "(cut over to ring v2: hit ratio" in out, out  # the warm-up finished in its window
    assert (work / "demo.png").stat().st_size > 10_000
    assert leftovers(work) == []


def test_the_demo_stops_everything_on_a_signal(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    process = subprocess.Popen(
        [*sidecar_command(), "demo", "--quick", "--dir", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    try:
        output.wait_for("1. steady traffic", 120)
        assert leftovers(work)
    finally:
        process.send_signal(signal.SIGTERM)
        text = output.finish(60)
    assert "interrupted: stopping everything" in text
    assert "stopped: no process of the demo is left" in text
    assert leftovers(work) == []
