"""Real processes for tests and benchmarks: Redis shards, the sidecar, twemproxy.

Everything here binds 127.0.0.1 only, lives in its own temporary directory and is killed by the
context manager that started it, even when the body raises or the run is interrupted.
"""

from tests.support.nutcracker import Nutcracker, start_nutcracker
from tests.support.ports import free_port
from tests.support.processes import ProcessFailed, cpu_seconds, cpu_times, rss_kib
from tests.support.redis_servers import RedisServer, start_redis, start_redis_servers
from tests.support.sidecar import (
    Sidecar,
    sidecar_command,
    sidecar_config,
    start_sidecar,
    write_config,
)

__all__ = [
    "Nutcracker",
    "ProcessFailed",
    "RedisServer",
    "Sidecar",
    "cpu_seconds",
    "cpu_times",
    "free_port",
    "rss_kib",
    "sidecar_command",
    "sidecar_config",
    "start_nutcracker",
    "start_redis",
    "start_redis_servers",
    "start_sidecar",
    "write_config",
]
