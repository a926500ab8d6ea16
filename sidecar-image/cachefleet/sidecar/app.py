"""The sidecar process: config in, listening socket, shard pools, admin endpoint, reloads.

``Sidecar.apply`` is the one place a config becomes routing: it reuses the pools of shards that
stay (same address and pool size), opens pools for new shards and gutter members, and retires
the pools that left; they close once their in-flight requests are answered.
``Sidecar.rebuild_routes`` compiles the route table from the ring, its pools and the health
monitor's ejections; it runs on every apply, ejection and re-admission.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from pathlib import Path

from cachefleet.config import SidecarConfig, read_secret, split_address
from cachefleet.sidecar.admin import AdminServer
from cachefleet.sidecar.flusher import make_flusher
from cachefleet.sidecar.grace import GraceRoute
from cachefleet.sidecar.hotkeys import HotKeyTracker, make_hot_keys
from cachefleet.sidecar.l1 import L1Cache, L1Route, TrackingLink
from cachefleet.sidecar.monitor import HealthMonitor
from cachefleet.sidecar.pool import BackendConnection, FailureHandler, ShardPool, ShardSettings
from cachefleet.sidecar.reload import ConfigWatcher
from cachefleet.sidecar.route_table import Mode, RouteTable, build_route_table
from cachefleet.sidecar.server import ClientConnection
from cachefleet.sidecar.shadow import ShadowRoute
from cachefleet.sidecar.speedups import make_ring
from cachefleet.sidecar.stats import Stats
from cachefleet.sidecar.warmup import WarmupRouting, WarmupStats

# The config's warm-up phase as the route table routes it.
WARMUP_MODES = {"shadow": Mode.SHADOW, "grace": Mode.GRACE, "drain": Mode.DRAIN}
log = logging.getLogger("cachefleet.sidecar")

HOUSEKEEPING_SECONDS = 0.1
DRAIN_SECONDS = 10.0


class Sidecar:
    def __init__(self, config: SidecarConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.stats = Stats()
        self.pools: dict[str, ShardPool] = {}  # the ring's shards, by name
        self.gutter: dict[str, ShardPool] = {}  # the gutter's members, by name
        self.retired: list[ShardPool] = []
        self.health = HealthMonitor(self)
        self.warmup_stats = WarmupStats()
        self.hot_keys: HotKeyTracker | None = None  # counts every request's key
        self.l1: L1Cache | None = None
        self.tracking: dict[str, TrackingLink] = {}  # by shard name: L1's invalidation links
        self.l1_hits_before = 0  # answered from L1 by the C loop of route tables gone
        self.config_hot_keys = config.hot_keys
        self.config_l1 = config.l1
        self.clients: set[ClientConnection] = set()
        self.ready = False
        self.client_password: bytes | None = None
        self.max_request_bytes = config.limits.max_request_bytes
        self.listen_port = split_address(config.listen)[1]
        self._server: asyncio.Server | None = None
        self._admin = AdminServer(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # -- config ----------------------------------------------------------------------------

    def apply(self, config: SidecarConfig) -> None:
        """Build routing for ``config`` and swap it in; raises (changing nothing) if it cannot."""
        ring = config.ring.to_ring()
        endpoints = {s.name: s.address for s in config.shards}
        shard_password = read_secret(config.auth.shard_password_file)
        client_password = read_secret(config.auth.client_password_file)
        size = config.pool.connections_per_shard
        created: list[ShardPool] = []

        def pools_for(
            addresses: dict[str, str],
            current: dict[str, ShardPool],
            failures: FailureHandler | None,
        ) -> dict[str, ShardPool]:
            pools: dict[str, ShardPool] = {}
            for name, address in addresses.items():
                host, port = split_address(address)
                settings = ShardSettings(
                    name=name,
                    host=host,
                    port=port,
                    connect_timeout=config.pool.connect_timeout_ms / 1000,
                    request_timeout=config.pool.request_timeout_ms / 1000,
                    username=config.auth.shard_username,
                    password=shard_password,
                )
                pool = current.get(name)
                if pool is None or pool.settings != settings or pool.size != size:
                    pool = ShardPool(settings, size, self.flusher, self.stats.shard(name), failures)
                    created.append(pool)
                pools[name] = pool
            return pools

        other = None
        if config.warmup is not None:
            other_ring = config.warmup.next_ring or config.warmup.previous_ring
            assert other_ring is not None  # the schema requires the phase's ring
            other = other_ring.to_ring()
        # The active ring's shards first (their pool index is their owner number), then the
        # shards only the other ring of a warm-up names.
        names = list(ring.shard_names)
        names += [n for n in (other.shard_names if other else ()) if n not in names]
        pools = pools_for({n: endpoints[n] for n in names}, self.pools, self.health)
        gutter_addresses = (
            {s.name: s.address for s in config.gutter.shards} if config.gutter.enabled else {}
        )
        gutter = pools_for(gutter_addresses, self.gutter, None)
        if config.listen != self.config.listen or config.admin_listen != self.config.admin_listen:
            log.warning("listen addresses changed in the config: that takes a restart")
        for pool in created:
            pool.start()
        kept = {id(p) for p in [*pools.values(), *gutter.values()]}
        for pool in [*self.pools.values(), *self.gutter.values()]:
            if id(pool) not in kept:
                pool.retire()
                self.retired.append(pool)
        self.pools = pools
        self.gutter = gutter
        self.client_password = client_password.encode() if client_password is not None else None
        self.max_request_bytes = config.limits.max_request_bytes
        previous = self.config.config_version
        self.config = config
        self._ring_pools = tuple(pools[name] for name in names)
        self._native_ring = make_ring(ring.tokens, ring.owners) if make_ring is not None else None
        self._lookup = (
            self._native_ring.lookup if self._native_ring is not None else ring.lookup_function()
        )
        self._other_lookup = None
        self._native_other = None
        if other is not None:
            # The other ring numbered like the pools, so both rings' owners compare directly.
            renumber = [names.index(n) for n in other.shard_names]
            self._other_lookup = other.lookup_function(renumber)
            if make_ring is not None:
                owners = [renumber[o] for o in other.owners]
                self._native_other = make_ring(other.tokens, owners)
        change = config.warmup.change_id if config.warmup is not None else ""
        if change != self.warmup_stats.change_id:
            self.warmup_stats = WarmupStats(change_id=change, lost=self.warmup_stats.lost)
        self._configure_hot_keys(config)
        self.health.configure(config, pools, list(gutter.values()))
        self.rebuild_routes()
        self.stats.config_version = config.config_version
        if self.ready:
            self.stats.config_reloads += 1
            log.info(
                "config %s applied (was %s): %d shards, %d new, %d retired",
                config.config_version, previous, len(pools), len(created), len(self.retired),
            )  # fmt: skip

    def _configure_hot_keys(self, config: SidecarConfig) -> None:
        """Hot-key detection (on for L1 too: L1 serves hot keys) and L1 with its tracking links,
        kept across reloads that do not change them."""
        wanted = config.hot_keys.enabled or config.l1.enabled
        if not wanted:
            self.hot_keys = None
        elif self.hot_keys is None or config.hot_keys != self.config_hot_keys:
            self.hot_keys = make_hot_keys(config.hot_keys)
        self.config_hot_keys = config.hot_keys
        if not config.l1.enabled:
            if self.l1 is not None:
                self.l1.flush()
            self.l1 = None
        elif self.l1 is None or config.l1 != self.config_l1:
            self.l1 = L1Cache(config.l1)
        self.config_l1 = config.l1
        links: dict[str, TrackingLink] = {}
        if self.l1 is not None:
            for owner, pool in enumerate(self._ring_pools):
                link = self.tracking.get(pool.name)
                if link is None or link.conn.settings != pool.settings or link.l1 is not self.l1:
                    conn = BackendConnection(
                        pool.settings, 3, self.flusher, pool.stats, tracking=True
                    )
                    link = TrackingLink(conn, owner, self.l1, self.rebuild_routes)
                    conn.failures_to = link
                    conn.connect()
                link.owner = owner
                links[pool.name] = link
        for name, link in self.tracking.items():
            if links.get(name) is not link:
                link.close()
        self.tracking = links

    def rebuild_routes(self) -> None:
        """Compile the route table for the current ring, warm-up and ejections; swap it in."""
        pools = self._ring_pools
        warmup = None
        section = self.config.warmup
        if section is not None and self._other_lookup is not None:
            shadow = section.phase == "shadow"
            warmup = WarmupRouting(
                WARMUP_MODES[section.phase],
                self._other_lookup,
                round(section.shadow_percent * 100),
                pools,
                self.warmup_stats,
                ShadowRoute if shadow else GraceRoute,
                self.health.serves,
            )
        l1_routes: list[L1Route | None] = []
        if self.l1 is not None:
            for pool in pools:
                link = self.tracking.get(pool.name)
                usable = link is not None and link.usable and link.owner == len(l1_routes)
                l1_routes.append(L1Route(pool, link) if usable and link else None)
        previous = getattr(self, "routes", None)
        self.routes: RouteTable = build_route_table(
            self.config.config_version,
            self._lookup,
            self._native_ring,
            pools,
            self.health.diverted(pools),
            warmup,
            self._native_other,
            self.hot_keys,
            self.l1.entries if self.l1 is not None else None,
            l1_routes,
        )
        if previous is not None and previous.native is not None:
            self.l1_hits_before += previous.native.l1_hits
            # Clients armed with it take their next read through Python, which re-arms them.
            previous.native.retire()

    def _rejected(self, reason: str) -> None:
        self.stats.config_reload_failures += 1

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.flusher = make_flusher(loop)
        self.apply(self.config)
        host, port = split_address(self.config.listen)
        self._server = await loop.create_server(
            lambda: ClientConnection(self), host, port, backlog=4096, reuse_address=True
        )
        sockets = self._server.sockets
        if sockets:
            self.listen_port = sockets[0].getsockname()[1]
        admin_host, admin_port = split_address(self.config.admin_listen)
        await self._admin.start(admin_host, admin_port)
        self._tasks.append(loop.create_task(self._housekeeping()))
        self.health.start()
        if self.config_path is not None:
            watcher = ConfigWatcher(
                self.config_path, self.apply, self._rejected, self.config_path.read_text()
            )
            self._tasks.append(loop.create_task(watcher.run()))
        self.ready = True
        log.info(
            "listening on %s (admin %s), %d shards, config %s",
            self.config.listen, self.config.admin_listen, len(self.pools),
            self.config.config_version,
        )  # fmt: skip

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            now = time.monotonic()  # the clock of the connections' marks
            for pool in [*self.pools.values(), *self.gutter.values()]:
                pool.check_timeouts(now)
            for link in self.tracking.values():
                link.conn.check_timeout(now)
            for pool in list(self.retired):
                pool.check_timeouts(now)
                if pool.drained:
                    pool.close()
                    self.retired.remove(pool)

    def client_opened(self, client: ClientConnection) -> None:
        self.clients.add(client)
        self.stats.client_connections += 1
        self.stats.client_connections_total += 1

    def client_closed(self, client: ClientConnection) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self.stats.client_connections -= 1

    def request_stop(self) -> None:
        self._stopping.set()

    async def serve_until_stopped(self) -> None:
        await self._stopping.wait()
        await self.stop()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), then close everything."""
        log.info("stopping: no new connections, finishing in-flight requests")
        self.ready = False
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            client.closing = True  # read nothing more; close once its replies are out
            if not client.pending and client.transport is not None:
                client.transport.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while self.clients and loop.time() < deadline:
            for client in list(self.clients):
                if not client.pending and client.transport is not None:
                    client.transport.close()
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.health.stop()
        for link in self.tracking.values():
            link.close()
        await self._admin.close()
        for pool in [*self.pools.values(), *self.gutter.values(), *self.retired]:
            pool.close()
        log.info("stopped")


# Every request allocates a few container objects (hiredis's argument list, a reply slot) that
# die young without cycles; the default gen-0 threshold of 700 ran a collection every few
# hundred requests (about 2% of the sidecar's CPU at pipeline 16).
GC_THRESHOLDS = (50_000, 20, 20)


async def serve(config: SidecarConfig, config_path: Path | None = None) -> int:
    app = Sidecar(config, config_path)
    await app.start()
    gc.freeze()  # what start-up built lives forever: keep it out of every collection
    gc.set_threshold(*GC_THRESHOLDS)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, app.request_stop)
    await app.serve_until_stopped()
    return 0


def run(config: SidecarConfig, config_path: Path | None = None) -> int:
    """Run the sidecar until SIGTERM/SIGINT; uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(config, config_path))
    return uvloop.run(serve(config, config_path))
