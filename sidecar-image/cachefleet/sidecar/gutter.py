"""The gutter pool (Facebook's pattern): a few spare servers that take an ejected shard's keys.

While a shard is ejected, the route table sends its keys here instead of to its ring neighbour:
rehashing onto a neighbour cascades the load and serves stale data after recovery. Keys are
spread over the members by key hash. Entries are short-lived: every write that reaches the
gutter is followed on the same connection by ``EXPIRE key ttlSeconds LT``, which sets the TTL
when the key has none or a longer one and keeps a shorter one. A read that misses is a miss.

Every write is also journaled on the member, before the write and on the same connection, so
an acknowledged write always has its journal entry: before a shard is re-admitted, the keys
journaled for it are deleted on it (``recovery``), so its old values never come back.

Journal keys on each member (``JOURNAL_PREFIX``): ``…:journal:{SHARD}`` (sorted set: key ->
sequence number of its latest write), ``…:seq`` (the sequence), ``…:journaled`` (set of shard
names with a journal) and ``…:overflow:{SHARD}`` (set when a journal outgrew
``JOURNAL_MAX_ENTRIES``: the shard is then flushed instead of cleaned key by key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cachefleet.ring.hashing import key_hash
from cachefleet.sidecar import resp
from cachefleet.sidecar.commands import Access
from cachefleet.sidecar.pool import ShardPool
from cachefleet.sidecar.route_table import Outgoing, Route
from cachefleet.sidecar.slots import PartSlot, Slot

JOURNAL_PREFIX = "cachefleet:gutter"
JOURNAL_MAX_ENTRIES = 100_000  # per shard and member; past it the shard is flushed on return
JOURNAL_RETENTION_SECONDS = 86_400  # an abandoned journal goes away after a day

# KEYS: journal, sequence, index, overflow. ARGV: shard, max entries, retention, keys...
JOURNAL_SCRIPT = b"""
redis.call('SADD', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if redis.call('ZCARD', KEYS[1]) + #ARGV - 3 > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
  return 0
end
local seq = redis.call('INCR', KEYS[2])
for i = 4, #ARGV do redis.call('ZADD', KEYS[1], seq, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def journal_key(shard: str) -> str:
    return f"{JOURNAL_PREFIX}:journal:{{{shard}}}"


def overflow_key(shard: str) -> str:
    return f"{JOURNAL_PREFIX}:overflow:{{{shard}}}"


SEQUENCE_KEY = f"{JOURNAL_PREFIX}:seq"
INDEX_KEY = f"{JOURNAL_PREFIX}:journaled"


def journal_command(shard: str) -> list[bytes]:
    """The command that journals writes to ``shard``'s keys, without the keys (appended)."""
    return [
        b"EVAL",
        JOURNAL_SCRIPT,
        b"4",
        journal_key(shard).encode(),
        SEQUENCE_KEY.encode(),
        INDEX_KEY.encode(),
        overflow_key(shard).encode(),
        shard.encode(),
        str(JOURNAL_MAX_ENTRIES).encode(),
        str(JOURNAL_RETENTION_SECONDS).encode(),
    ]


def cap_ttl_request(key: bytes, ttl_seconds: int) -> bytes:
    return resp.encode_request([b"EXPIRE", key, str(ttl_seconds).encode(), b"LT"])


def member_index(key: bytes, members: int) -> int:
    """Which member holds ``key``: by its hash (hash tags honoured, like the ring)."""
    return key_hash(key) % members


class _SideReply:
    """The reply to a command the gutter route adds (journal, TTL): not the client's. A journal
    entry that was not written (an error, or the journal overflowed) puts the shard in
    ``unjournaled``, so it is flushed on re-admission rather than trusted."""

    __slots__ = ("shard", "unjournaled")

    def __init__(self, shard: str, unjournaled: set[str] | None) -> None:
        self.shard = shard
        self.unjournaled = unjournaled

    def part_done(self, slot: Slot, reply: bytes) -> None:
        if self.unjournaled is not None and reply != b":1\r\n":
            self.unjournaled.add(self.shard)


class GutterMemberRoute:
    """An ejected shard's keys that hash to one gutter member."""

    __slots__ = ("count", "down_why", "journal", "journal_reply", "member", "name", "shard", "ttl",
                 "ttl_reply")  # fmt: skip

    def __init__(
        self,
        shard: str,
        down_why: str,
        member: ShardPool,
        ttl: int,
        unjournaled: set[str],
        count: Callable[[str], None],
    ) -> None:
        self.name = "gutter"
        self.shard = shard
        self.down_why = down_why
        self.member = member
        self.ttl = ttl
        self.journal = journal_command(shard)
        self.count = count
        self.journal_reply = _SideReply(shard, unjournaled)
        self.ttl_reply = _SideReply(shard, None)

    def send(self, request: Outgoing) -> None:
        member = self.member
        conn = member.connection(request.protocol, request.client_id)
        if not conn.up:
            self.count("gutter_unavailable")
            request.slot.fill(
                resp.error(
                    f"ERR shard {self.shard} unavailable ({self.down_why}) and gutter "
                    f"{member.name} unavailable too ({conn.down_reason or 'closed'})"
                )
            )
            return
        self.count("gutter")
        spec = request.spec
        member.count(spec)
        if not spec.writes:
            conn.send(request.raw, request.slot)
            return
        # Journal first: when the write is acknowledged, its journal entry exists.
        conn.send(resp.encode_request([*self.journal, *request.keys]), PartSlot(self.journal_reply))
        conn.send(request.raw, request.slot)
        if spec.access != Access.DELETE:
            for key in request.keys:
                conn.send(cap_ttl_request(key, self.ttl), PartSlot(self.ttl_reply))


class GutterRoute:
    """The route unit for an ejected shard: its keys spread over the gutter's members."""

    __slots__ = ("members", "name")

    def __init__(
        self,
        shard: str,
        down_why: str,
        members: Sequence[ShardPool],
        ttl: int,
        unjournaled: set[str],
        count: Callable[[str], None],
    ) -> None:
        self.name = "gutter"
        self.members = [
            GutterMemberRoute(shard, down_why, m, ttl, unjournaled, count) for m in members
        ]

    def for_key(self, key: bytes) -> Route:
        members = self.members
        return members[member_index(key, len(members))] if len(members) > 1 else members[0]

    def send(self, request: Outgoing) -> None:
        self.for_key(request.keys[0]).send(request)
