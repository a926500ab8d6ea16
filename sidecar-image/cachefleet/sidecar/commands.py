"""The command table: how the sidecar treats every command it knows, and why.

Kinds:
- SINGLE: one key at ``key_index``; forwarded untouched to the shard that owns it.
- SPLIT: MGET, MSET, DEL, UNLINK, EXISTS, TOUCH: split per shard, replies reassembled.
- SAME_SHARD: several keys that Redis must see together (RENAME, SINTER, EVAL with keys, ...):
  forwarded when every key lives on one shard, refused otherwise (hash tags make that happen).
- LOCAL: answered by the sidecar itself (connection set-up, PING, INFO, ...).
- REFUSED: cannot work through a sharding proxy; the error says why.

Every command also has an access class (``Access``): what it does to its keys. Route units need
it: the gutter caps the TTL of anything that writes, a warm-up mirrors an overwrite but removes
the key on a read-modify-write, a failed shard's in-flight reads may be retried elsewhere.

Arity follows Redis: positive means exactly that many arguments including the name, negative
means at least that many.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from cachefleet.config.keys import OWN_KEY_PREFIX
from cachefleet.sidecar.resp import quote_args

KeysOf = Callable[[Sequence[bytes]], list[bytes] | None]


class Kind(IntEnum):
    SINGLE = 0
    SPLIT = 1
    SAME_SHARD = 2
    LOCAL = 3
    REFUSED = 4


class Access(IntEnum):
    """What a command does to the keys it names."""

    READ = 0  # reads only: safe to retry or to answer from elsewhere
    OVERWRITE = 1  # replaces the whole value, whatever was there (SET, MSET, GETSET)
    READ_MODIFY_WRITE = 2  # the result depends on the old value or changes part of it
    DELETE = 3  # removes keys (DEL, UNLINK, GETDEL)
    OTHER = 4  # not about keys (local commands), or unknown to the sidecar (scripts)


class Split(IntEnum):
    """How a SPLIT command's per-shard replies become one."""

    VALUES = 0  # MGET: one value per key, in the client's key order
    OK = 1  # MSET: +OK when every part said +OK
    SUM = 2  # DEL/UNLINK/EXISTS/TOUCH: integer replies added up


@dataclass(eq=False, slots=True)
class CommandSpec:
    """Identity-hashed, so it can key the per-request counters cheaply."""

    name: str
    kind: Kind
    arity: int
    key_index: int = 1
    keys_of: KeysOf | None = None
    split: Split | None = None
    step: int = 1  # arguments per key in a SPLIT command (2 for MSET's key/value)
    reason: str = ""
    access: Access = field(init=False)
    metric_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.metric_name = self.name
        self.access = access_of(self.name, self.kind)

    @property
    def writes(self) -> bool:
        """Changes what a key holds (or may: scripts are assumed to)."""
        return self.access != Access.READ and self.kind not in (Kind.LOCAL, Kind.REFUSED)

    def arity_ok(self, argc: int) -> bool:
        """The argument count Redis accepts (and, for key-value pairs, whole pairs)."""
        arity = self.arity
        if not (argc == arity if arity > 0 else argc >= -arity):
            return False
        return self.step != 2 or argc % 2 == 1


# The errors both routers (the sidecar and the smart client) answer with, worded once.


def unknown_command_error(args: Sequence[bytes]) -> str:
    name = args[0][:128].decode("utf-8", "replace")
    return f"ERR unknown command '{name}', with args beginning with: " + quote_args(args[1:])


def refused_error(spec: CommandSpec) -> str:
    return f"ERR {spec.name.upper()} is not supported by cachefleet: {spec.reason}"


def own_key_error(spec: CommandSpec) -> str:
    return (
        f"ERR {spec.name.upper()} of a key starting with '{OWN_KEY_PREFIX}': cachefleet keeps "
        "its own bookkeeping under that prefix on the shards (heartbeats, the gutter's journal, "
        "warm-up tombstones), so an app's keys may not start with it"
    )


def wrong_arity_error(spec: CommandSpec) -> str:
    return f"ERR wrong number of arguments for '{spec.name}' command"


def keyless_error(spec: CommandSpec, router: str) -> str:
    return (
        f"ERR {spec.name.upper()} is not supported by cachefleet without keys: "
        f"the {router} routes by key"
    )


def across_shards_error(spec: CommandSpec) -> str:
    return (
        f"ERR {spec.name.upper()} is not supported by cachefleet across shards: its keys "
        "live on different shards (put them under one hash tag, like {user1}a and {user1}b)"
    )


# Read-only commands. Everything else that names keys writes; the two lists below say how.
_READS = frozenset(
    """get strlen getrange substr ttl pttl type expiretime pexpiretime dump object hget hstrlen
    hexists hmget hscan hlen hkeys hvals hgetall hrandfield lpos llen lrange lindex smismember
    sscan smembers scard sismember srandmember zrange zrangebyscore zrevrange zrevrangebyscore
    zrangebylex zrevrangebylex zrank zrevrank zmscore zscan zscore zcount zlexcount zcard
    zrandmember getbit bitcount bitfield_ro bitpos geohash geopos georadiusbymember_ro geodist
    georadius_ro geosearch xlen xrange xrevrange xpending xinfo lcs sinter sunion sdiff
    sintercard zunion zinter zdiff zintercard pfcount eval_ro evalsha_ro fcall_ro mget exists
    touch""".split()  # noqa: SIM905
)

# SET with NX or XX is conditional: the route units that care (a warm-up's mirror) look at the
# arguments. MSETNX and RESTORE (which fails when the key exists) are conditional too.
_OVERWRITES = frozenset(["set", "setex", "psetex", "getset", "mset"])
_DELETES = frozenset(["del", "unlink", "getdel"])
_UNKNOWN_WRITES = frozenset(["eval", "evalsha", "fcall"])  # may do anything to their keys


def access_of(name: str, kind: Kind) -> Access:
    if kind in (Kind.LOCAL, Kind.REFUSED) or name in _UNKNOWN_WRITES:
        return Access.OTHER
    if name in _READS:
        return Access.READ
    if name in _OVERWRITES:
        return Access.OVERWRITE
    if name in _DELETES:
        return Access.DELETE
    return Access.READ_MODIFY_WRITE


def key_range(first: int, last: int = -1, step: int = 1) -> KeysOf:
    """Keys at first, first+step, ... up to ``last`` (-1: the end, -2: all but the last)."""

    def keys(args: Sequence[bytes]) -> list[bytes]:
        stop = len(args) + last + 1 if last < 0 else last + 1
        return list(args[first:stop:step])

    return keys


def numkeys(count_index: int, fixed: tuple[int, ...] = ()) -> KeysOf:
    """Keys announced by a count argument (EVAL, ZUNIONSTORE, LMPOP, ...), plus fixed ones."""

    def keys(args: Sequence[bytes]) -> list[bytes] | None:
        try:
            count = int(args[count_index])
        except (ValueError, IndexError):
            return None
        start = count_index + 1
        if count < 0 or start + count > len(args):
            return None
        return [args[i] for i in fixed] + list(args[start : start + count])

    return keys


def _single(arity: int, *names: str, key_index: int = 1) -> list[CommandSpec]:
    return [CommandSpec(n, Kind.SINGLE, arity, key_index=key_index) for n in names]


def _same(arity: int, keys_of: KeysOf, *names: str) -> list[CommandSpec]:
    return [CommandSpec(n, Kind.SAME_SHARD, arity, keys_of=keys_of) for n in names]


def _refused(reason: str, *names: str) -> list[CommandSpec]:
    return [CommandSpec(n, Kind.REFUSED, -1, reason=reason) for n in names]


TRANSACTIONS = "transactions and WATCH cannot span shards behind a proxy"
BLOCKING = "blocking commands would hold a pooled shard connection shared by every client"
PUBSUB = "pub/sub needs a dedicated connection and channels are not shared between shards"
FLEET_WIDE = "it spans every shard; run it against each shard directly"
ADMIN = "server administration goes to each shard directly, not through the sidecar"
SCRIPTS = "scripts and functions are loaded per shard; use EVAL/EVALSHA with keys on one shard"

_TABLE: list[CommandSpec] = [
    # strings
    *_single(2, "get", "strlen", "incr", "decr", "getdel"),
    *_single(-3, "set"),
    *_single(3, "setnx", "getset", "append", "incrby", "decrby", "incrbyfloat"),
    *_single(4, "setex", "psetex", "getrange", "setrange", "substr"),
    *_single(-2, "getex"),
    # generic key commands
    *_single(-3, "expire", "pexpire", "expireat", "pexpireat"),
    *_single(2, "ttl", "pttl", "persist", "type", "expiretime", "pexpiretime", "dump"),
    *_single(-4, "restore"),
    *_single(-3, "object", key_index=2),
    # hashes
    *_single(3, "hget", "hstrlen", "hexists"),
    *_single(-4, "hset", "hmset"),
    *_single(4, "hsetnx", "hincrby", "hincrbyfloat"),
    *_single(-3, "hmget", "hdel", "hscan"),
    *_single(2, "hlen", "hkeys", "hvals", "hgetall"),
    *_single(-2, "hrandfield"),
    # lists
    *_single(-3, "lpush", "rpush", "lpushx", "rpushx", "lpos"),
    *_single(-2, "lpop", "rpop"),
    *_single(2, "llen"),
    *_single(4, "lrange", "lset", "lrem", "ltrim"),
    *_single(3, "lindex"),
    *_single(5, "linsert"),
    # sets
    *_single(-3, "sadd", "srem", "smismember", "sscan"),
    *_single(2, "smembers", "scard"),
    *_single(3, "sismember"),
    *_single(-2, "spop", "srandmember"),
    # sorted sets
    *_single(-4, "zadd", "zrange", "zrangebyscore", "zrevrange", "zrevrangebyscore"),
    *_single(-4, "zrangebylex", "zrevrangebylex"),
    *_single(-3, "zrem", "zrank", "zrevrank", "zmscore", "zscan"),
    *_single(3, "zscore"),
    *_single(4, "zincrby", "zcount", "zremrangebyrank", "zremrangebyscore", "zlexcount"),
    *_single(4, "zremrangebylex"),
    *_single(2, "zcard"),
    *_single(-2, "zpopmin", "zpopmax", "zrandmember"),
    # bitmaps, hyperloglog, geo
    *_single(4, "setbit"),
    *_single(3, "getbit"),
    *_single(-2, "bitcount", "bitfield", "bitfield_ro", "pfadd", "geohash", "geopos"),
    *_single(-3, "bitpos"),
    *_single(-5, "geoadd", "georadiusbymember_ro"),
    *_single(-4, "geodist"),
    *_single(-6, "georadius_ro"),
    *_single(-7, "geosearch"),
    # streams (non-blocking)
    *_single(-5, "xadd"),
    *_single(2, "xlen"),
    *_single(-4, "xrange", "xrevrange", "xtrim", "xack"),
    *_single(-3, "xdel", "xpending", "xsetid"),
    *_single(-6, "xclaim", "xautoclaim"),
    *_single(-3, "xinfo", "xgroup", key_index=2),
    # several keys that must live together
    *_same(3, key_range(1, 2), "rename", "renamenx", "rpoplpush"),
    *_same(-3, key_range(1, 2), "copy", "lcs"),
    *_same(5, key_range(1, 2), "lmove"),
    *_same(4, key_range(1, 2), "smove"),
    *_same(-2, key_range(1), "sinter", "sunion", "sdiff", "pfcount", "pfmerge"),
    *_same(-3, key_range(1), "sinterstore", "sunionstore", "sdiffstore"),
    *_same(-3, key_range(1, -1, 2), "msetnx"),
    *_same(-4, key_range(2), "bitop"),
    *_same(-5, key_range(1, 2), "zrangestore"),
    *_same(-8, key_range(1, 2), "geosearchstore"),
    *_same(-4, numkeys(2, (1,)), "zunionstore", "zinterstore", "zdiffstore"),
    *_same(-3, numkeys(1), "zunion", "zinter", "zdiff", "zintercard", "sintercard"),
    *_same(-4, numkeys(1), "lmpop", "zmpop"),
    *_same(-3, numkeys(2), "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"),
    # split across shards
    CommandSpec("mget", Kind.SPLIT, -2, split=Split.VALUES),
    CommandSpec("mset", Kind.SPLIT, -3, split=Split.OK, step=2),
    *[
        CommandSpec(n, Kind.SPLIT, -2, split=Split.SUM)
        for n in ("del", "unlink", "exists", "touch")
    ],
    # answered by the sidecar
    *[
        CommandSpec(n, Kind.LOCAL, a)
        for n, a in (
            ("ping", -1),
            ("echo", 2),
            ("hello", -1),
            ("client", -2),
            ("info", -1),
            ("select", 2),
            ("quit", -1),
            ("command", -1),
            ("auth", -2),
            ("reset", 1),
        )
    ],
    # refused, with the reason in the error
    *_refused(TRANSACTIONS, "multi", "exec", "discard", "watch", "unwatch"),
    *_refused(BLOCKING, "blpop", "brpop", "brpoplpush", "blmove", "blmpop"),
    *_refused(BLOCKING, "bzpopmin", "bzpopmax", "bzmpop", "xread", "xreadgroup", "wait"),
    *_refused(BLOCKING, "waitaof"),
    *_refused(PUBSUB, "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe"),
    *_refused(PUBSUB, "sunsubscribe", "publish", "spublish", "pubsub", "monitor"),
    *_refused(FLEET_WIDE, "keys", "scan", "randomkey", "dbsize", "flushall", "flushdb"),
    *_refused(ADMIN, "config", "save", "bgsave", "bgrewriteaof", "lastsave", "shutdown"),
    *_refused(ADMIN, "debug", "slowlog", "latency", "memory", "acl", "module", "replicaof"),
    *_refused(ADMIN, "slaveof", "sync", "psync", "failover", "cluster", "readonly", "readwrite"),
    *_refused(ADMIN, "role", "time", "lolwut", "migrate", "swapdb"),
    *_refused(SCRIPTS, "script", "function"),
    *_refused("the fleet has one database (0)", "move"),
    *_refused("its BY and GET patterns read keys on other shards", "sort", "sort_ro"),
    *_refused(
        "georadius can STORE into another key; use GEOSEARCH", "georadius", "georadiusbymember"
    ),
]


def _build(specs: list[CommandSpec]) -> dict[bytes, CommandSpec]:
    """Look-up by name as clients spell it: exact lower and upper case hit without folding."""
    table: dict[bytes, CommandSpec] = {}
    for spec in specs:
        name = spec.name.encode()
        if name in table:
            raise ValueError(f"command {spec.name} listed twice")
        table[name] = spec
        table[name.upper()] = spec
    return table


COMMANDS: dict[bytes, CommandSpec] = _build(_TABLE)


def keys_of(spec: CommandSpec, args: Sequence[bytes]) -> list[bytes]:
    """The keys a (well-formed) request names; empty for commands without keys."""
    if spec.kind == Kind.SINGLE:
        return [args[spec.key_index]] if len(args) > spec.key_index else []
    if spec.kind == Kind.SPLIT:
        return list(args[1 :: spec.step])
    if spec.kind == Kind.SAME_SHARD and spec.keys_of is not None:
        return spec.keys_of(args) or []
    return []


SUPPORTED = sorted(s.name for s in _TABLE if s.kind != Kind.REFUSED)
REFUSED = sorted((s.name, s.reason) for s in _TABLE if s.kind == Kind.REFUSED)


def lookup(name: bytes) -> CommandSpec | None:
    spec = COMMANDS.get(name)
    if spec is None:
        spec = COMMANDS.get(name.lower())
    return spec
