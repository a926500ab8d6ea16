"""The health monitor: runs the health policy against real shards and applies its decisions.

It hears about failures from the pools (``FailureHandler``: a failed connection is a hard
failure), takes their round-trip times, probes every shard with PING on a connection of its
own (``control``) each check interval and an ejected shard when its ejection is over, re-admits
a shard through the clean-up in ``recovery``, and polls the gutter's journals. Each decision
rebuilds the route table (``Sidecar.rebuild_routes``), so requests see it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING

import hiredis

from cachefleet.config import SidecarConfig
from cachefleet.config.keys import HEARTBEAT_KEY as SIDECARS_HASH
from cachefleet.config.keys import HEARTBEAT_SECONDS, warmup_stats_key
from cachefleet.sidecar.commands import Access, keys_of, lookup
from cachefleet.sidecar.control import ControlConnection, ControlError
from cachefleet.sidecar.gutter import GutterRoute
from cachefleet.sidecar.health import Cause, HealthPolicy, State, Transition
from cachefleet.sidecar.pool import ShardPool
from cachefleet.sidecar.recovery import CleanupError, GutterMember, HoldRoute, JournalCleaner
from cachefleet.sidecar.route_table import ErrorRoute, Outgoing, OwnerRoute, Reason
from cachefleet.sidecar.slots import Slot
from cachefleet.sidecar.warmup import STATS_RETENTION_SECONDS

if TYPE_CHECKING:
    from cachefleet.sidecar.app import Sidecar

log = logging.getLogger("cachefleet.sidecar.health")

TICK_SECONDS = 0.05  # how often due probes are looked for
# Where sidecars say which config they run: a hash (sidecar id -> "configVersion unixTime") on
# the shard that owns this key on their active ring, where the operator reads it.
HEARTBEAT_KEY = SIDECARS_HASH.encode()


class HealthMonitor:
    def __init__(self, app: Sidecar) -> None:
        self.app = app
        self.policy = HealthPolicy(app.config.health, [], 0.0)
        self.controls: dict[str, ControlConnection] = {}
        self.gutter: list[GutterMember] = []
        self.cleaner = JournalCleaner([], 1.0, self._now)
        # Shards whose gutter journal missed a write: flushed, not cleaned, on re-admission.
        self.unjournaled: set[str] = set()
        self.holds: dict[str, HoldRoute] = {}
        self.probing: set[str] = set()
        self.ejected_at: dict[str, float] = {}  # wall clock, for /shards
        self.identity = f"{os.uname().nodename}:{os.getpid()}"
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._polling = False
        self._delivering = False
        self._next_check = 0.0
        self._next_heartbeat = 0.0
        self._hot_generation = -1

    # -- configuration -----------------------------------------------------------------------

    def configure(
        self, config: SidecarConfig, shards: Mapping[str, ShardPool], gutter: Sequence[ShardPool]
    ) -> None:
        """The ring's shards and the gutter's members after a config apply."""
        now = self._now()
        # Say at the next tick which config runs now: the operator's steps wait for it.
        self._next_heartbeat = 0.0
        self.policy.configure(config.health)
        self.policy.set_shards(shards, now)
        controls: dict[str, ControlConnection] = {}
        for name, pool in shards.items():
            current = self.controls.get(name)
            if current is not None and current.settings == pool.settings:
                controls[name] = current
            else:
                controls[name] = ControlConnection(pool.settings)
        for name, control in self.controls.items():
            if controls.get(name) is not control:
                control.close()
        self.controls = controls
        kept = {m.pool.name: m for m in self.gutter}
        members = []
        for pool in gutter:
            member = kept.pop(pool.name, None)
            if member is None or member.pool is not pool:
                member = GutterMember(pool, ControlConnection(pool.settings))
            members.append(member)
        for member in kept.values():
            member.control.close()
        self.gutter = members
        self.cleaner = JournalCleaner(self.gutter, self._timeout(), self._now)

    def _timeout(self) -> float:
        return self.app.config.pool.request_timeout_ms / 1000

    def _now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    # -- what the route table needs ----------------------------------------------------------

    def diverted(self, pools: Sequence[ShardPool]) -> dict[int, tuple[Reason, OwnerRoute]]:
        """The owners whose keys leave the fast path, and the route unit that takes them."""
        diverted: dict[int, tuple[Reason, OwnerRoute]] = {}
        for owner, pool in enumerate(pools):
            shard = self.policy.shards.get(pool.name)
            if shard is None:
                continue
            if shard.state == State.EJECTED:
                diverted[owner] = (Reason.GUTTER, self._gutter_route(pool.name, shard.reason))
            elif shard.state == State.RECOVERING:
                # Held from the table that first sees it recovering: its keys must not reach
                # it before the clean-up has run.
                hold = self.holds.get(pool.name)
                if hold is None:
                    hold = self.holds[pool.name] = HoldRoute(pool.name, self.app.stats.route)
                diverted[owner] = (Reason.HOLD, hold)
        return diverted

    def _gutter_route(self, name: str, reason: str) -> OwnerRoute:
        app = self.app
        if not self.gutter:
            return ErrorRoute(
                "ejected_no_gutter",
                f"ERR shard {name} unavailable (ejected: {reason}) and no gutter pool is "
                "configured to take its keys",
                app.stats.route,
            )
        return GutterRoute(
            name,
            f"ejected: {reason}",
            [m.pool for m in self.gutter],
            app.config.gutter.ttl_seconds,
            self.unjournaled,
            app.stats.route,
        )

    # -- FailureHandler ----------------------------------------------------------------------

    def connection_failed(self, pool_name: str, reason: str) -> None:
        cause = Cause.TIMEOUT if reason.startswith("no reply within") else Cause.CONNECTION
        self._apply(self.policy.hard_failure(pool_name, cause, reason, self._now()))

    def retry_elsewhere(self, raw: bytes, args: list[bytes], slot: Slot, protocol: int) -> bool:
        """A read in flight on a failed connection goes once to the gutter, when the shard it
        was sent to is ejected now; anything else is answered with the connection's error."""
        spec = lookup(args[0]) if args else None
        if spec is None or spec.access != Access.READ or not self.gutter:
            return False
        if slot.client is None and not getattr(slot.parent, "retryable", False):
            return False  # the sidecar's own work (a probe, a shadow read): not the client's
        keys = keys_of(spec, args)
        if not keys:
            return False
        table = self.app.routes
        owners = {table.lookup(key) for key in keys}
        if len(owners) != 1 or table.stops[owners.pop()] != Reason.GUTTER:
            return False
        client = slot.client if slot.client is not None else getattr(slot.parent, "slot", None)
        client_id = getattr(getattr(client, "client", client), "id", 0)
        self.app.stats.route("retried_on_gutter")
        table.destination(keys[0]).send(Outgoing(spec, keys, raw, slot, protocol, client_id))
        return True

    # -- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        tasks = [t for t in [self._runner, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for control in self.controls.values():
            control.close()
        for member in self.gutter:
            member.control.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.tick(self._now())
            except Exception:  # the monitor must keep running whatever one tick hit
                log.exception("health check failed")

    def tick(self, now: float) -> None:
        self._cool_hot_keys()
        policy = self.policy
        for name, pool in self.app.pools.items():
            window = pool.stats.latency.take_window()
            if any(window):
                policy.round_trip_counts(name, window, now)
        for name in policy.probes_due(now):
            self._spawn_probe(name)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_SECONDS
            self._spawn(self._heartbeat())
        if now < self._next_check:
            return
        self._next_check = now + policy.interval
        for change in policy.judge_latency(now):
            self._apply(change)
        for name, shard in policy.shards.items():
            if shard.state in (State.HEALTHY, State.FAILING):
                self._spawn_probe(name)
        if self.gutter and not self._polling:
            self._polling = True
            self._spawn(self._poll())
        if self.app.warmup_stats.lost and not self._delivering:
            self._delivering = True
            self._spawn(self._deliver_unsynced())
        self._report_warmup()

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn_probe(self, name: str) -> None:
        if name not in self.probing and name in self.controls:
            self.probing.add(name)
            self._spawn(self._probe(name))

    async def _probe(self, name: str) -> None:
        try:
            control = self.controls[name]
            timeout = min(self._timeout(), self.policy.interval)
            started = self._now()
            try:
                (reply,) = await control.call([["PING"]], timeout)
                if isinstance(reply, hiredis.ReplyError):
                    raise ControlError(f"PING answered {reply}", hard=False)
            except ControlError as error:
                change = self.policy.probe_failed(name, str(error), error.hard, self._now())
                self._apply(change)
                return
            now = self._now()
            change = self.policy.probe_succeeded(name, now - started, now)
            self._apply(change)
            if change is not None and change.state == State.RECOVERING:
                await self._readmit(name)
        finally:
            self.probing.discard(name)

    async def _readmit(self, name: str) -> None:
        # The table built when it turned RECOVERING holds its requests (a shard no table
        # routes to has none yet: nothing to hold).
        hold = self.holds.setdefault(name, HoldRoute(name, self.app.stats.route))
        control = self.controls.get(name)
        try:
            if control is None:
                raise CleanupError("the shard left the ring")
            shard = self.policy.shards[name]
            unsynced = self.app.warmup_stats.lost.pop(name, set())
            try:
                what = await asyncio.wait_for(
                    self.cleaner.readmit(
                        name,
                        control,
                        lost=name in self.unjournaled,
                        out_since=shard.out_since,
                        unsynced=unsynced,
                    ),
                    self._timeout() * 2,
                )
                # Invalidations that failed while it was cleaned (it was out of the ring, so
                # they were remembered): delivered too before it serves.
                for _ in range(3):
                    late = self.app.warmup_stats.lost.pop(name, None)
                    if not late:
                        break
                    unsynced |= late
                    await asyncio.wait_for(
                        self.cleaner.clear_unsynced(control, late), self._timeout() * 2
                    )
            except BaseException:
                self.app.warmup_stats.lost.setdefault(name, set()).update(unsynced)
                raise
        except (ControlError, CleanupError, TimeoutError) as error:
            self.holds.pop(name, None)
            self._apply(self.policy.recovery_failed(name, str(error) or "timed out", self._now()))
            hold.release(self.app.routes)
            return
        self.unjournaled.discard(name)
        pool = self.app.pools.get(name)
        if pool is not None:
            for conn in pool.connections():
                conn.reconnect_now()
        self.holds.pop(name, None)
        since = self.ejected_at.pop(name, None)
        change = self.policy.recovered(name, self._now())
        if change is None:  # it left the ring meanwhile
            hold.release(self.app.routes)
            return
        self.app.stats.readmissions[name] = self.app.stats.readmissions.get(name, 0) + 1
        self.app.rebuild_routes()
        released = hold.release(self.app.routes)
        out_for = f" after {time.time() - since:.1f} s" if since is not None else ""
        log.warning(
            "shard %s re-admitted%s: %s; %d held requests released", name, out_for, what, released
        )

    async def _deliver_unsynced(self) -> None:
        """Warm-up invalidations that could not reach a shard that still serves (a connection
        that dropped, an error reply, a shard failing beyond the ejection cap) are delivered
        as soon as its control connection answers, not left for a re-admission that may never
        come. An ejected shard gets them in its re-admission clean-up instead."""
        lost = self.app.warmup_stats.lost
        try:
            for name in [n for n in lost if self.serves(n) and n in self.controls]:
                keys = lost.pop(name)
                try:
                    what = await asyncio.wait_for(
                        self.cleaner.clear_unsynced(self.controls[name], keys),
                        self._timeout() * 2,
                    )
                except (ControlError, CleanupError, TimeoutError):
                    lost.setdefault(name, set()).update(keys)
                    continue
                log.info("shard %s: %s", name, what)
        finally:
            self._delivering = False

    async def _poll(self) -> None:
        try:
            cleaned = await self.cleaner.poll(self.serves, self.controls.get, self.identity)
            for shard, count in cleaned:
                log.info(
                    "deleted %d keys on %s that were written through the gutter meanwhile",
                    count, shard,
                )  # fmt: skip
        finally:
            self._polling = False

    def _cool_hot_keys(self) -> None:
        """Let keys that stopped arriving cool down, and drop L1 entries of keys not hot."""
        tracker = self.app.hot_keys
        if tracker is None:
            return
        tracker.tick()
        generation = tracker.hot_generation
        if generation != self._hot_generation:
            self._hot_generation = generation
            if self.app.l1 is not None:
                self.app.l1.keep_only(tracker.hot_keys())

    def _report_warmup(self) -> None:
        """Add what this sidecar measured since the last report to each warming shard's
        counters (the operator sums every sidecar's there)."""
        stats = self.app.warmup_stats
        if not stats.change_id:
            return
        for shard, counts in list(stats.unreported.items()):
            control = self.controls.get(shard)
            if control is None or not any(counts):
                continue
            del stats.unreported[shard]
            self._spawn(self._add_counts(control, shard, stats.change_id, counts))

    async def _add_counts(
        self, control: ControlConnection, shard: str, change_id: str, counts: list[int]
    ) -> None:
        key = warmup_stats_key(change_id)
        try:
            await control.call(
                [
                    ["HINCRBY", key, "hits", counts[0]],
                    ["HINCRBY", key, "misses", counts[1]],
                    ["EXPIRE", key, STATS_RETENTION_SECONDS],
                ],
                self._timeout(),
            )
        except ControlError:
            stats = self.app.warmup_stats
            if stats.change_id == change_id:  # try again next time
                pending = stats.unreported.setdefault(shard, [0, 0])
                pending[0] += counts[0]
                pending[1] += counts[1]

    async def _heartbeat(self) -> None:
        table = self.app.routes
        owner = table.pools[table.lookup(HEARTBEAT_KEY)].name
        control = self.controls.get(owner)
        if control is None:
            return
        value = f"{self.app.config.config_version} {int(time.time())}"
        with contextlib.suppress(ControlError):
            await control.call([["HSET", HEARTBEAT_KEY, self.identity, value]], self._timeout())

    def serves(self, name: str) -> bool:
        """Whether requests may be sent to ``name``: it is in the ring, not ejected."""
        shard = self.policy.shards.get(name)
        return shard is not None and shard.state in (State.HEALTHY, State.FAILING)

    # -- applying decisions ------------------------------------------------------------------

    def _apply(self, change: Transition | None) -> None:
        if change is None:
            return
        stats = self.app.stats
        if change.state == State.EJECTED:
            shard = self.policy.shards[change.name]
            out_for = shard.probe_at - self._now()
            if change.name in self.ejected_at:  # its probe failed: out for longer
                log.info("shard %s still out, next probe in %.1f s: %s",
                         change.name, out_for, change.reason)  # fmt: skip
            else:
                key = (change.name, str(change.cause))
                stats.ejections[key] = stats.ejections.get(key, 0) + 1
                self.ejected_at[change.name] = time.time()
                target = "the gutter" if self.gutter else "errors (no gutter)"
                log.warning(
                    "shard %s ejected (%s) for %.1f s, its keys go to %s: %s",
                    change.name, change.cause, out_for, target, change.reason,
                )  # fmt: skip
        elif change.state == State.HEALTHY:
            self.ejected_at.pop(change.name, None)
            log.info("shard %s healthy", change.name)
        elif change.state == State.FAILING:
            log.warning("shard %s failing: %s", change.name, change.reason)
        elif change.state == State.RECOVERING:
            log.info("shard %s answers its probe; cleaning up before re-admission", change.name)
        self.app.rebuild_routes()

    # -- /shards -----------------------------------------------------------------------------

    def report(self) -> dict[str, object]:
        policy = self.policy
        now = self._now()
        shards = []
        for name, shard in policy.shards.items():
            pool = self.app.pools.get(name)
            entry: dict[str, object] = {
                "name": name,
                "address": f"{pool.settings.host}:{pool.settings.port}" if pool else None,
                "state": str(shard.state),
                "probing": name in self.probing,
                "reason": shard.reason or None,
                "since": time.time() - (now - shard.since),
                "ejections": shard.ejections,
                "p50Ms": _ms(shard.p50),
                "p99Ms": _ms(shard.p99),
                "lastProbeMs": _ms(shard.last_probe),
            }
            if shard.state == State.EJECTED:
                entry["nextProbeInSeconds"] = round(max(0.0, shard.probe_at - now), 3)
            shards.append(entry)
        return {
            "shards": shards,
            "maxEjected": policy.max_ejected,
            "gutter": [m.pool.name for m in self.gutter],
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
