"""A minute of garbage at the sidecar: does it keep serving, and does its memory stay flat?

Starts four redis-server shards and the sidecar (request cap 1 MiB so over-cap frames are cheap to
send), then for ``--seconds`` opens connection after connection from ``--parallel`` workers, each
sending random bytes, mutated and cut frames, or huge declared lengths. VmRSS is sampled every
second. Flat means: after a warm-up, RSS grows by less than ``--max-growth-mib``. A client doing
real SET/GET next to the garbage must see no failure. Prints one JSON line and a summary.

    python bench/sidecar_garbage.py [--seconds 60] [--parallel 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cachefleet.config import LimitsConfig  # noqa: E402

from bench.entry import run  # noqa: E402
from tests.support import (  # noqa: E402
    rss_kib,
    sidecar_config,
    start_redis_servers,
    start_sidecar,
)
from tests.support.garbage import SoakStats, soak  # noqa: E402
from tests.support.resp import encode, split_replies  # noqa: E402

CAP = 1 << 20
WARMUP_SECONDS = 5.0


async def _sample_rss(pid: int, samples: list[tuple[float, int]], stop: asyncio.Event) -> None:
    started = time.monotonic()
    while not stop.is_set():
        samples.append((round(time.monotonic() - started, 1), rss_kib(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _bystander(port: int, stop: asyncio.Event) -> dict[str, Any]:
    """Real requests on one long-lived connection while the garbage flies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done, failures, buffer = 0, [], b""
    try:
        while not stop.is_set():
            value = str(done).encode()
            writer.write(encode("SET", "bystander", value) + encode("GET", "bystander"))
            replies: list[bytes] = []
            while len(replies) < 2:
                chunk = await asyncio.wait_for(reader.read(65536), 5.0)
                if not chunk:
                    failures.append(f"closed after {done} requests")
                    return {"requests": done * 2, "failures": failures}
                more, buffer = split_replies(buffer + chunk)
                replies += more
            if replies != [b"+OK\r\n", b"$%d\r\n%s\r\n" % (len(value), value)]:
                failures.append(f"request {done}: {replies!r}")
            done += 1
            await asyncio.sleep(0.001)
    except (TimeoutError, ConnectionError) as error:
        failures.append(f"after {done} requests: {error!r}")
    finally:
        writer.close()
    return {"requests": done * 2, "failures": failures[:10]}


async def _run(port: int, pid: int, seconds: float, parallel: int) -> tuple[Any, ...]:
    samples: list[tuple[float, int]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(pid, samples, stop))
    bystander = asyncio.create_task(_bystander(port, stop))
    stats: SoakStats = await soak(port, seconds, parallel=parallel, seed=42, cap=CAP)
    stop.set()
    await sampler
    return stats, samples, await bystander


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--max-growth-mib", type=float, default=16.0)
    args = parser.parse_args()
    if args.seconds <= WARMUP_SECONDS or args.parallel < 1:
        parser.error(f"--seconds must exceed the {WARMUP_SECONDS:g} s warm-up; --parallel >= 1")
    with start_redis_servers(4) as shards:
        config = sidecar_config(
            [s.address for s in shards], limits=LimitsConfig(max_request_bytes=CAP)
        )
        with start_sidecar(config=config) as sidecar:
            rss_start = rss_kib(sidecar.pid)
            stats, samples, bystander = asyncio.run(
                _run(sidecar.port, sidecar.pid, args.seconds, args.parallel)
            )
            alive = sidecar.alive()
            rss_end = rss_kib(sidecar.pid) if alive else None
    warm = [kib for at, kib in samples if at >= WARMUP_SECONDS]
    growth_mib = (max(warm) - warm[0]) / 1024 if len(warm) > 1 else None
    flat = growth_mib is not None and growth_mib < args.max_growth_mib
    ok = alive and flat and not bystander["failures"] and stats.invalid_replies == 0
    report = {
        "benchmark": "sidecar_garbage",
        "seconds": args.seconds,
        "parallel": args.parallel,
        "connections": stats.connections,
        "bytes_sent": stats.bytes_sent,
        "error_replies": stats.error_replies,
        "closed_by_sidecar": stats.closed_by_sidecar,
        "invalid_replies": stats.invalid_replies,
        "invalid_examples": stats.examples,
        "sidecar_alive": alive,
        "rss_kib_start": rss_start,
        "rss_kib_end": rss_end,
        "rss_growth_after_warmup_mib": growth_mib,
        "rss_samples_kib": [kib for _, kib in samples],
        "bystander": bystander,
        "flat": flat,
        "ok": ok,
    }
    print(json.dumps(report))
    growth = "n/a" if growth_mib is None else f"{growth_mib:+.1f} MiB"
    print(
        f"sidecar garbage: {stats.connections} connections, {stats.bytes_sent / 1e6:.1f} MB of "
        f"garbage in {args.seconds:g} s; RSS after warm-up {growth} "
        f"({'flat' if flat else 'NOT flat'}); bystander {bystander['requests']} requests, "
        f"{len(bystander['failures'])} failures; sidecar {'alive' if alive else 'DEAD'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    run(main)
