"""The smart client: the sidecar's routing inside the application, for apps that want no sidecar.

``ShardedRedis`` reads the same config file the sidecar reads (the operator's ConfigMap, mounted)
and routes every command by the same ring and the same command table: single-key commands to the
key's shard, MGET/MSET/DEL/UNLINK/EXISTS/TOUCH split per shard and put back together in the
caller's order, commands whose keys must live together forwarded only when they do, and the
same refusals with the same messages. It re-reads the file when it changes.

When a shard refuses or drops a connection or times out (the config's ``pool.requestTimeoutMs``
and ``pool.connectTimeoutMs``, unless ``socket_timeout`` is given), the shard is ejected for a while
(doubling, at most 10 s) and its keys go to the gutter pool, as the sidecar does: spread by key
hash, every write journaled there first and its TTL capped after (``EXPIRE key ttl LT``), so the
sidecars' re-admission clean-up (and this client's) deletes those keys on the shard before it
serves again. A read in flight is retried once on the gutter. With no gutter, or the gutter down
too, the error names both.

What it does not do: a capacity change's shadow and grace routing (it routes by the active ring),
hot-key detection and L1, and gray-failure detection; those live in the sidecar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachefleet.config import SidecarConfig, read_secret, split_address
from cachefleet.config.keys import is_own_key
from cachefleet.sidecar.commands import (
    Access,
    CommandSpec,
    Kind,
    Split,
    across_shards_error,
    keyless_error,
    keys_of,
    lookup,
    own_key_error,
    refused_error,
    unknown_command_error,
    wrong_arity_error,
)
from cachefleet.sidecar.gutter import (
    INDEX_KEY,
    journal_command,
    journal_key,
    member_index,
    overflow_key,
)
from cachefleet.sidecar.recovery import DELETE_BATCH, DELETE_LIMIT, TRIM_SCRIPT
from cachefleet.sidecar.reload import ConfigWatcher

FIRST_EJECTION = 0.2
MAX_EJECTION = 10.0
FAILURES = (redis.ConnectionError, redis.TimeoutError)


class ShardedRedis:
    def __init__(
        self,
        config: str | Path | SidecarConfig,
        *,
        password: str | None = None,
        reload_seconds: float = 1.0,
        socket_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        **redis_options: Any,
    ) -> None:
        self.password = password
        self.reload_seconds = reload_seconds
        self.clock = clock
        # None: the config's pool.requestTimeoutMs, as the sidecar waits for a shard; without
        # a timeout a stopped or cut-off shard would block the caller for good, never ejected.
        self.socket_timeout = socket_timeout
        self.options = redis_options
        self._checked = 0.0
        self.clients: dict[str, redis.Redis] = {}
        self.gutter: list[redis.Redis] = []
        self.ejected: dict[str, tuple[float, float]] = {}  # shard -> (until, backoff)
        self.watcher: ConfigWatcher | None = None
        if isinstance(config, SidecarConfig):
            self._apply(config)
        else:
            path = Path(config)
            text = path.read_text()
            self._apply(SidecarConfig.model_validate_json(text))
            # The sidecar's own watcher: a changed file that does not validate, or cannot be
            # applied, is logged and the running config keeps routing.
            self.watcher = ConfigWatcher(path, self._apply, _ignore, text)

    # -- config -------------------------------------------------------------------------------

    def _apply(self, config: SidecarConfig) -> None:
        ring = config.ring.to_ring()
        password = self.password
        if password is None:
            password = read_secret(config.auth.shard_password_file)
        username = config.auth.shard_username
        addresses = {s.name: s.address for s in config.shards}
        old = [*self.clients.values(), *self.gutter]
        options = {
            "username": username,
            "password": password,
            "socket_timeout": (
                config.pool.request_timeout_ms / 1000
                if self.socket_timeout is None
                else self.socket_timeout
            ),
            "socket_connect_timeout": config.pool.connect_timeout_ms / 1000,
            # redis-py would retry a timed-out command 3 times with backoff (about 10 s on a
            # stopped shard) and could apply a write twice; the retry here is the gutter's.
            "retry": Retry(NoBackoff(), 0),
            **self.options,
        }
        self.clients = {name: self._connect(addresses[name], options) for name in ring.shard_names}
        self.gutter = (
            [self._connect(s.address, options) for s in config.gutter.shards]
            if config.gutter.enabled
            else []
        )
        self.names = list(ring.shard_names)
        self.lookup = ring.lookup_function()
        self.config = config
        for client in old:
            client.close()

    @staticmethod
    def _connect(address: str, options: dict[str, Any]) -> redis.Redis:
        host, port = split_address(address)
        return redis.Redis(host=host, port=port, **options)

    def _maybe_reload(self) -> None:
        if self.watcher is None or self.clock() - self._checked < self.reload_seconds:
            return
        self._checked = self.clock()
        self.watcher.check()

    def close(self) -> None:
        for client in [*self.clients.values(), *self.gutter]:
            client.close()

    def __enter__(self) -> ShardedRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands -----------------------------------------------------------------------------

    def execute_command(self, *args: Any) -> Any:
        self._maybe_reload()
        raw = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        if not raw:
            raise redis.ResponseError("ERR empty command")
        spec = lookup(raw[0])
        if spec is None:
            raise redis.ResponseError(unknown_command_error(raw))
        if spec.kind == Kind.REFUSED:
            raise redis.ResponseError(refused_error(spec))
        if not spec.arity_ok(len(raw)):
            raise redis.ResponseError(wrong_arity_error(spec))
        if spec.kind == Kind.LOCAL:
            return self._local(spec, raw)
        keys = keys_of(spec, raw)
        if any(is_own_key(key) for key in keys):
            # The gutter's journal lives under that prefix, as with the sidecar.
            raise redis.ResponseError(own_key_error(spec))
        if spec.kind == Kind.SPLIT:
            return self._split(spec, raw)
        if not keys:
            raise redis.ResponseError(keyless_error(spec, "client"))
        if len({self.lookup(k) for k in keys}) != 1:
            raise redis.ResponseError(across_shards_error(spec))
        return self._send(spec, keys, raw)

    def shard_of(self, key: bytes | str) -> str:
        """The shard a key lives on (the ring's name for it)."""
        return self.names[self.lookup(key if isinstance(key, bytes) else key.encode())]

    def _local(self, spec: CommandSpec, raw: list[bytes]) -> Any:
        if spec.name == "ping":
            return True if len(raw) == 1 else raw[1]
        if spec.name == "echo":
            return raw[1]
        raise redis.ResponseError(
            f"ERR {spec.name.upper()} is not supported by the cachefleet client: "
            "it is a connection command, and this client has no single connection"
        )

    def _split(self, spec: CommandSpec, raw: list[bytes]) -> Any:
        step = spec.step
        groups: dict[int, list[int]] = {}
        for position, i in enumerate(range(1, len(raw), step)):
            groups.setdefault(self.lookup(raw[i]), []).append(position)
        results: dict[int, Any] = {}
        for owner, positions in groups.items():
            sub = [raw[0]]
            for position in positions:
                first = 1 + position * step
                sub.extend(raw[first : first + step])
            results[owner] = self._send(spec, sub[1::step], sub)
        if spec.split == Split.SUM:
            return sum(int(v) for v in results.values())
        if spec.split == Split.OK:
            return all(bool(v) for v in results.values())
        values: list[Any] = [None] * ((len(raw) - 1) // step)
        for owner, positions in groups.items():
            for position, value in zip(positions, results[owner], strict=True):
                values[position] = value
        return values

    # -- one shard, or the gutter ---------------------------------------------------------------

    def _send(self, spec: CommandSpec, keys: Sequence[bytes], raw: list[bytes]) -> Any:
        shard = self.names[self.lookup(keys[0])]
        if self._is_ejected(shard):
            return self._gutter(shard, spec, keys, raw, "ejected")
        try:
            return _call(self.clients[shard], *raw)
        except FAILURES as error:
            self._eject(shard)
            if spec.access == Access.READ and self.gutter:
                return self._gutter(shard, spec, keys, raw, str(error))
            raise redis.ConnectionError(f"shard {shard} unavailable: {error}") from error

    def _is_ejected(self, shard: str) -> bool:
        entry = self.ejected.get(shard)
        if entry is None:
            return False
        until, backoff = entry
        if self.clock() < until:
            return True
        try:  # the ejection is over: probe, clean up what was written meanwhile, re-admit
            self.clients[shard].ping()
            self._clean(shard)
        except (redis.RedisError, OSError):
            self.ejected[shard] = (self.clock() + min(backoff * 2, MAX_EJECTION), backoff * 2)
            return True
        del self.ejected[shard]
        return False

    def _eject(self, shard: str) -> None:
        backoff = self.ejected.get(shard, (0.0, FIRST_EJECTION / 2))[1] * 2
        backoff = min(backoff, MAX_EJECTION)
        self.ejected[shard] = (self.clock() + backoff, backoff)

    def _gutter(
        self, shard: str, spec: CommandSpec, keys: Sequence[bytes], raw: list[bytes], why: str
    ) -> Any:
        if not self.gutter:
            raise redis.ConnectionError(
                f"shard {shard} unavailable ({why}) and no gutter pool is configured"
            )
        member = self.gutter[member_index(keys[0], len(self.gutter))]
        try:
            if not spec.writes:
                return _call(member, *raw)
            _call(member, *journal_command(shard), *keys)  # first, as the sidecar does
            result = _call(member, *raw)
            if spec.access != Access.DELETE:
                for key in keys:
                    _call(member, "EXPIRE", key, self.config.gutter.ttl_seconds, "LT")
            return result
        except FAILURES as error:
            raise redis.ConnectionError(
                f"shard {shard} unavailable ({why}) and the gutter unavailable too ({error})"
            ) from error

    def _clean(self, shard: str) -> None:
        """Delete on ``shard`` the keys journaled for it in the gutter, before it serves again
        (past ``DELETE_LIMIT`` of them, or an overflowed journal: flush it, as the sidecar
        does)."""
        client = self.clients[shard]
        journals = []
        for member in self.gutter:
            entries = cast(
                "list[tuple[bytes, float]]",
                member.zrange(journal_key(shard), 0, -1, withscores=True),
            )
            overflow = bool(_call(member, "EXISTS", overflow_key(shard)))
            journals.append(
                (member, [k for k, _ in entries], max((s for _, s in entries), default=0), overflow)
            )
        keys = sorted({k for _, ks, _, _ in journals for k in ks})
        flush = any(o for _, _, _, o in journals) or len(keys) > DELETE_LIMIT
        if flush:
            client.flushall(asynchronous=True)
        else:
            for start in range(0, len(keys), DELETE_BATCH):
                _call(client, "UNLINK", *keys[start : start + DELETE_BATCH])
        for member, ks, highest, _ in journals:
            for start in range(0, len(ks), DELETE_BATCH):
                _call(member, "UNLINK", *ks[start : start + DELETE_BATCH])
            _call(
                member,
                "EVAL",
                TRIM_SCRIPT,
                3,
                journal_key(shard),
                INDEX_KEY,
                overflow_key(shard),
                int(highest),
                shard,
                1 if flush else 0,
            )

    # -- the commands applications call most --------------------------------------------------

    def get(self, key: Any) -> Any:
        return self.execute_command("GET", key)

    def set(self, key: Any, value: Any, ex: int | None = None, px: int | None = None) -> Any:
        extra: list[Any] = []
        if ex is not None:
            extra += ["EX", ex]
        if px is not None:
            extra += ["PX", px]
        return self.execute_command("SET", key, value, *extra)

    def delete(self, *keys: Any) -> Any:
        return self.execute_command("DEL", *keys)

    def mget(self, keys: Sequence[Any]) -> Any:
        return self.execute_command("MGET", *keys)

    def mset(self, mapping: dict[Any, Any]) -> Any:
        return self.execute_command("MSET", *[part for pair in mapping.items() for part in pair])

    def exists(self, *keys: Any) -> Any:
        return self.execute_command("EXISTS", *keys)

    def incr(self, key: Any, amount: int = 1) -> Any:
        return self.execute_command("INCRBY", key, amount)

    def expire(self, key: Any, seconds: int) -> Any:
        return self.execute_command("EXPIRE", key, seconds)

    def ttl(self, key: Any) -> Any:
        return self.execute_command("TTL", key)

    def ping(self) -> Any:
        return self.execute_command("PING")


def _call(client: redis.Redis, *args: Any) -> Any:
    """One command on one server, as redis-py sends it (its ``execute_command`` is untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _ignore(reason: str) -> None:
    """The watcher has logged why a new config was not applied; nothing else to do."""
