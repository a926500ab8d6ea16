"""What one client connection costs a Redis server in memory, busy and idle.

The simulator (`cachefleet sim`) turns connection counts into memory per cache node with these
two figures. Starts one redis-server, reads `mem_clients_normal` from INFO memory, opens
``--connections`` connections that each send one PING, and reads it again ``--busy-seconds``
later: a connection that read a request keeps its query buffer until it has been idle for 2 s,
and Redis's clientsCron updates the per-client accounting over about a second. Then again
after ``--idle-seconds``, when clientsCron has shrunk the idle buffers. Prints one JSON line and
a summary. Memory is not timing: a busy machine does not change it.

    python bench/connection_memory.py [--connections 2000] [--busy-seconds 1.5] [--idle-seconds 6]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import start_redis  # noqa: E402
from tests.support.redis_servers import stop_redis  # noqa: E402


def info(host: str, port: int) -> dict[str, str]:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"INFO\r\n")
        header = b""
        while not header.endswith(b"\r\n"):
            header += sock.recv(1)
        size = int(header[1:-2])
        body = b""
        while len(body) < size + 2:
            body += sock.recv(65536)
    fields = (line.split(":", 1) for line in body.decode().splitlines() if ":" in line)
    return {name: value for name, value in fields}


def measure(connections: int, busy_seconds: float, idle_seconds: float) -> dict[str, object]:
    server = start_redis()
    clients: list[socket.socket] = []
    try:
        before = info(server.host, server.port)
        for _ in range(connections):
            clients.append(socket.create_connection((server.host, server.port), timeout=5))
        # All requests in a short burst, after connecting: a connection idle for 2 s is trimmed.
        for client in clients:
            client.sendall(b"PING\r\n")
        for client in clients:
            client.recv(16)
        time.sleep(busy_seconds)
        busy = info(server.host, server.port)
        time.sleep(idle_seconds - busy_seconds)
        idle = info(server.host, server.port)
    finally:
        for client in clients:
            client.close()
        stop_redis(server)
    base = int(before["mem_clients_normal"])
    return {
        "redis_version": busy["redis_version"],
        "connections": connections,
        "connected_clients": int(busy["connected_clients"]),
        "bytes_per_connection_busy": (int(busy["mem_clients_normal"]) - base) / connections,
        "bytes_per_connection_idle": (int(idle["mem_clients_normal"]) - base) / connections,
        "busy_seconds": busy_seconds,
        "idle_seconds": idle_seconds,
        "redis_server": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--busy-seconds", type=float, default=1.5)
    parser.add_argument("--idle-seconds", type=float, default=6.0)
    args = parser.parse_args()
    if not 0 < args.busy_seconds < 2 <= args.idle_seconds:
        parser.error("need 0 < --busy-seconds < 2 <= --idle-seconds (Redis trims after 2 s idle)")
    result = measure(args.connections, args.busy_seconds, args.idle_seconds)
    print(json.dumps(result))
    print(
        f"Redis {result['redis_version']}, {result['connections']} connections: "
        f"{result['bytes_per_connection_busy']:,.0f} bytes per connection in use, "
        f"{result['bytes_per_connection_idle']:,.0f} once idle"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
