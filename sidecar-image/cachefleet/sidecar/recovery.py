"""Nothing stale after recovery: what runs before an ejected shard serves again.

While a shard was ejected, its keys were written and deleted on the gutter, journaled there by
every sidecar (``gutter``). The shard may come back with its old values (it was hung or cut off,
not restarted), so before it is re-admitted the re-admitting sidecar:

1. holds the shard's requests (``HoldRoute``): nothing reads it before the clean-up is done;
2. waits for every request it sent to the gutter to be answered (a PING behind them on each
   gutter connection), so every journal entry of this sidecar's acknowledged writes exists;
3. reads the shard's journal on every gutter member and deletes those keys on the shard and on
   the gutter (a journal past its bound, or one that could not be written or read, flushes the
   shard instead: it is a cache);
4. removes the journal entries it handled (by sequence number, so entries added meanwhile
   stay), re-admits the shard and releases the held requests.

Other sidecars may still have the shard ejected and keep writing to the gutter. Every sidecar
that has a shard in its ring also polls the journals once per check interval and deletes on the
shard what was journaled meanwhile (``JournalCleaner.poll``): that bounds how long a sidecar can
read an old value that another sidecar overwrote or deleted through the gutter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import hiredis

from cachefleet.sidecar import resp
from cachefleet.sidecar.control import ControlConnection, ControlError
from cachefleet.sidecar.gutter import INDEX_KEY, journal_key, overflow_key
from cachefleet.sidecar.pool import READY, ShardPool
from cachefleet.sidecar.route_table import Outgoing, Route, RouteTable
from cachefleet.sidecar.slots import PartSlot, Slot
from cachefleet.sidecar.warmup import LOST_LIMIT

log = logging.getLogger("cachefleet.sidecar.recovery")

HOLD_LIMIT = 100_000  # requests held per re-admitted shard; beyond, they are refused
DELETE_BATCH = 1000
# More journaled keys than this and the re-admission flushes the shard instead of deleting
# them one by one, so held requests never wait long.
DELETE_LIMIT = 10_000
LOCK_PREFIX = "cachefleet:gutter:cleaning"

# KEYS: journal, index, overflow. ARGV: highest sequence handled, shard, flushed (1/0).
TRIM_SCRIPT = b"""
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if ARGV[3] == '1' then redis.call('DEL', KEYS[3]) end
if redis.call('ZCARD', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
end
return 1
"""


class HoldRoute:
    """The route unit for a shard being re-admitted: its requests wait for the clean-up."""

    __slots__ = ("count", "held", "limit", "name", "shard")

    def __init__(self, shard: str, count: Callable[[str], None], limit: int = HOLD_LIMIT) -> None:
        self.name = "hold"
        self.shard = shard
        self.count = count
        self.limit = limit
        self.held: list[Outgoing] = []

    def for_key(self, key: bytes) -> Route:
        return self

    def send(self, request: Outgoing) -> None:
        if len(self.held) >= self.limit:
            self.count("hold_refused")
            request.slot.fill(resp.error(f"ERR shard {self.shard} is being re-admitted; try again"))
            return
        self.count("hold")
        self.held.append(request)

    def release(self, table: RouteTable) -> int:
        """Send what waited, in arrival order, where ``table`` routes it now."""
        held, self.held = self.held, []
        for request in held:
            table.destination(request.keys[0]).send(request)
        return len(held)


class _Barrier:
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def part_done(self, slot: Slot, reply: bytes) -> None:
        if not self.future.done():
            self.future.set_result(None)


async def drain(pools: Iterable[ShardPool], timeout: float) -> None:
    """Wait until everything sent so far on these pools' connections is answered (a PING
    queued behind it on each one); a connection that fails meanwhile answers it too."""
    loop = asyncio.get_running_loop()
    futures = []
    for pool in pools:
        for conn in pool.connections():
            if conn.state == READY and not conn.drained:
                future: asyncio.Future[None] = loop.create_future()
                conn.send(resp.encode_request([b"PING"]), PartSlot(_Barrier(future)))
                futures.append(future)
    if futures:
        await asyncio.wait_for(asyncio.gather(*futures), timeout)


@dataclass
class Journal:
    """What one gutter member journaled for a shard."""

    keys: list[bytes]
    highest: int  # the highest sequence number read
    overflow: bool


@dataclass
class GutterMember:
    pool: ShardPool
    control: ControlConnection
    run_id: str | None = None  # the server's, as last seen: a new one means it restarted empty
    restarted_at: float | None = None  # when a new run_id was first seen (the monitor's clock)


def run_id_of(info: object) -> str | None:
    """The run_id line of an ``INFO server`` reply."""
    text = bytes(info).decode("latin-1") if isinstance(info, bytes | bytearray) else ""
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line[7:].strip()
    return None


class CleanupError(Exception):
    pass


class JournalCleaner:
    def __init__(
        self, members: Sequence[GutterMember], timeout: float, clock: Callable[[], float]
    ) -> None:
        self.members = list(members)
        self.timeout = timeout
        self.clock = clock

    def _seen(self, member: GutterMember, info: object) -> None:
        run_id = run_id_of(info)
        if run_id is None:
            return
        if member.run_id is not None and run_id != member.run_id:
            member.restarted_at = self.clock()
            log.warning("gutter %s restarted: the journals it held are gone", member.pool.name)
        member.run_id = run_id

    async def _call(
        self, control: ControlConnection, commands: list[list[bytes | str | int]]
    ) -> list[object]:
        try:
            replies = await control.call(commands, self.timeout)
        except ControlError as error:
            if not error.hard:
                raise
            # A connection the gutter closed (it restarted, or its idle timeout) says nothing
            # about the journal, and flushing a whole shard for it would be a miss storm: ask
            # once more, on a new connection, which also sees a restart's new run_id.
            replies = await control.call(commands, self.timeout)
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise CleanupError(str(reply))
        return replies

    async def _read(self, member: GutterMember, shard: str) -> Journal:
        info, overflow, entries = await self._call(
            member.control,
            [
                ["INFO", "server"],
                ["EXISTS", overflow_key(shard)],
                ["ZRANGE", journal_key(shard), 0, -1, "WITHSCORES"],
            ],
        )
        self._seen(member, info)
        assert isinstance(entries, list)
        keys = [bytes(k) for k in entries[0::2]]
        scores = [int(float(s)) for s in entries[1::2]]
        return Journal(keys, max(scores, default=0), overflow == 1)

    async def _trim(
        self, member: GutterMember, shard: str, journal: Journal, flushed: bool
    ) -> None:
        await self._call(
            member.control,
            [["EVAL", TRIM_SCRIPT, 3, journal_key(shard), INDEX_KEY, overflow_key(shard),
              journal.highest, shard, 1 if flushed else 0]],
        )  # fmt: skip

    async def _delete(self, control: ControlConnection, keys: Sequence[bytes]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            await self._call(control, [["UNLINK", *keys[start : start + DELETE_BATCH]]])

    async def clear_unsynced(self, control: ControlConnection, unsynced: set[bytes]) -> str:
        """Delete the keys whose warm-up invalidation never reached a shard (past
        ``LOST_LIMIT`` of them some were not even remembered: the shard is flushed, it is a
        cache); returns what it did."""
        if len(unsynced) > LOST_LIMIT:
            await self._call(control, [["FLUSHALL", "ASYNC"]])
            return f"flushed ({len(unsynced)} warm-up invalidations could not reach it)"
        await self._delete(control, sorted(unsynced))
        return f"deleted {len(unsynced)} keys whose warm-up invalidation could not reach it"

    async def readmit(
        self,
        shard: str,
        shard_control: ControlConnection,
        lost: bool,
        out_since: float,
        unsynced: set[bytes] | None = None,
    ) -> str:
        """Steps 2 to 4 for a shard this sidecar re-admits, out of the ring since ``out_since``
        (the clock's time), with the keys whose warm-up invalidation never reached it
        (``unsynced``; past ``LOST_LIMIT`` of them the shard is flushed); returns what it did
        (for the log). Raises ControlError or CleanupError when the shard cannot be cleaned."""
        unsynced = unsynced or set()
        if len(unsynced) > LOST_LIMIT or not self.members:
            what = await self.clear_unsynced(shard_control, unsynced)
            return what if self.members else f"no gutter; {what}"
        try:
            await drain([m.pool for m in self.members], self.timeout)
            journals = [await self._read(m, shard) for m in self.members]
        except (ControlError, CleanupError, TimeoutError) as error:
            # The gutter cannot say what changed while the shard was out: trust nothing on it.
            await self._call(shard_control, [["FLUSHALL", "ASYNC"]])
            return f"flushed (the gutter's journal could not be read: {error})"
        keys = sorted({key for j in journals for key in j.keys} | unsynced)
        restarted = any(
            m.restarted_at is not None and m.restarted_at >= out_since for m in self.members
        )
        overflow = any(j.overflow for j in journals)
        flush = lost or restarted or overflow or len(keys) > DELETE_LIMIT
        if flush:
            await self._call(shard_control, [["FLUSHALL", "ASYNC"]])
        else:
            await self._delete(shard_control, keys)
        for member, journal in zip(self.members, journals, strict=True):
            try:
                await self._delete(member.control, journal.keys)
                await self._trim(member, shard, journal, flush)
            except (ControlError, CleanupError) as error:
                log.warning(
                    "gutter %s: journal of %s not trimmed: %s", member.pool.name, shard, error
                )
        if flush:
            if lost:
                why = "a journal write failed"
            elif restarted:
                why = "a gutter member restarted meanwhile, losing its journal"
            elif overflow:
                why = "a journal outgrew its bound"
            else:
                why = f"{len(keys)} keys were journaled"
            return f"flushed ({why})"
        return f"deleted {len(keys)} keys written through the gutter meanwhile"

    async def poll(
        self,
        in_ring: Callable[[str], bool],
        controls: Callable[[str], ControlConnection | None],
        owner: str,
    ) -> list[tuple[str, int]]:
        """Delete on each shard this sidecar serves what other sidecars journaled for it
        meanwhile; returns (shard, keys deleted) for the shards it cleaned."""
        cleaned: list[tuple[str, int]] = []
        for member in self.members:
            try:
                info, names = await self._call(
                    member.control, [["INFO", "server"], ["SMEMBERS", INDEX_KEY]]
                )
            except (ControlError, CleanupError):
                continue
            self._seen(member, info)
            assert isinstance(names, list)
            for raw_name in names:
                shard = bytes(raw_name).decode("utf-8", "replace")
                control = controls(shard)
                if control is None or not in_ring(shard):
                    continue
                lock = f"{LOCK_PREFIX}:{{{shard}}}"
                try:
                    (locked,) = await self._call(
                        member.control,
                        [["SET", lock, owner, "NX", "PX", int(self.timeout * 1000)]],
                    )
                    if locked is None:
                        continue  # another sidecar is cleaning it right now
                    journal = await self._read(member, shard)
                    if journal.overflow:
                        await self._call(control, [["FLUSHALL", "ASYNC"]])
                    else:
                        await self._delete(control, journal.keys)
                    await self._trim(member, shard, journal, journal.overflow)
                    cleaned.append((shard, len(journal.keys)))
                except (ControlError, CleanupError) as error:
                    log.info("journal of %s on %s: not cleaned this time: %s",
                             shard, member.pool.name, error)  # fmt: skip
        return cleaned
