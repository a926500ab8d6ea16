"""What ``cachefleet up`` shows while it runs: per shard its ops/s and keys, ejected shards,
hot keys, the warm-up's phase and percentage. ``observe`` reads it from the local fleet (the
shards' INFO, the sidecar's /shards and /hotkeys); ``render`` turns it into text, pure."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import redis

from cachefleet_operator.local.fleet import LocalFleet


@dataclass
class ServerLine:
    name: str
    address: str
    ops_per_second: int | None
    keys: int | None
    state: str = ""  # the sidecar's view: healthy, ejected, ...
    reason: str = ""


@dataclass
class Snapshot:
    cluster: str
    phase: str | None
    shards_in_ring: int | None
    warm_up: str = ""
    sidecar: str = ""
    servers: list[ServerLine] = field(default_factory=list)
    hot_keys: list[tuple[str, float, bool]] = field(default_factory=list)  # key, rate, in L1
    events: list[str] = field(default_factory=list)


def _admin(port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1.0) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _server_stats(address: str, password: str | None) -> tuple[int | None, int | None]:
    host, _, port = address.rpartition(":")
    client = redis.Redis(
        host=host,
        port=int(port),
        password=password,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
    try:
        info = client.info("stats")
        keys = client.dbsize()
        return int(info.get("instantaneous_ops_per_sec", 0)), int(keys)
    except redis.RedisError:
        return None, None
    finally:
        client.close()


def observe(fleet: LocalFleet) -> Snapshot:
    status = fleet.status
    warm = status.get("warmUp") or {}
    warm_up = ""
    if warm:
        warm_up = (
            f"{warm.get('fromShards')} → {warm.get('toShards')} shards, {warm.get('phase')}, "
            f"shadowing {warm.get('percent', 0):g}%"
        )
    shards = _admin(fleet.admin_port, "/shards") or {}
    states = {s["name"]: s for s in shards.get("shards", [])}
    snapshot = Snapshot(
        cluster=fleet.name,
        phase=status.get("phase"),
        shards_in_ring=status.get("shards"),
        warm_up=warm_up,
        sidecar=f"127.0.0.1:{fleet.sidecar_port}",
    )
    for member, process in sorted(fleet.redis.items(), key=lambda item: _order(item[0])):
        ops, keys = _server_stats(process.address, fleet.password)
        state = states.get(member, {})
        snapshot.servers.append(
            ServerLine(
                member,
                process.address,
                ops,
                keys,
                state.get("state", ""),
                state.get("reason") or "",
            )
        )
    hot = _admin(fleet.admin_port, "/hotkeys") or {}
    snapshot.hot_keys = [
        (k["key"], float(k["ratePerSecond"]), bool(k.get("inL1")))
        for k in hot.get("keys", [])
        if k.get("hot")
    ]
    snapshot.events = [f"{e.reason}: {e.message}" for e in fleet.events[-4:]]
    return snapshot


def _order(member: str) -> tuple[int, int]:
    kind, _, number = member.rpartition("-")
    return (1 if kind == "gutter" else 0, int(number) if number.isdigit() else 0)


def render(snapshot: Snapshot, now: float | None = None) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(now))
    lines = [
        f"cachefleet up · {snapshot.cluster} · {stamp} · phase {snapshot.phase or '-'}"
        f" · {snapshot.shards_in_ring or '?'} shards in the ring",
        f"connect: redis-cli -p {snapshot.sidecar.rpartition(':')[2]}   (Ctrl-C stops everything)",
    ]
    if snapshot.warm_up:
        lines.append(f"warm-up: {snapshot.warm_up}")
    lines.append("")
    lines.append(f"{'server':<10} {'address':<17} {'ops/s':>8} {'keys':>8}  sidecar")
    for server in snapshot.servers:
        ops = "down" if server.ops_per_second is None else f"{server.ops_per_second:,}"
        keys = "-" if server.keys is None else f"{server.keys:,}"
        state = server.state
        if server.reason and state != "healthy":
            state += f" ({server.reason[:60]})"
        lines.append(f"{server.name:<10} {server.address:<17} {ops:>8} {keys:>8}  {state}")
    lines.append("")
    if snapshot.hot_keys:
        hot = ", ".join(
            f"{key} {rate:,.0f}/s{' (L1)' if in_l1 else ''}"
            for key, rate, in_l1 in snapshot.hot_keys
        )
        lines.append(f"hot keys: {hot}")
    else:
        lines.append("hot keys: none")
    for event in snapshot.events:
        lines.append(f"· {event}")
    return "\n".join(lines)
