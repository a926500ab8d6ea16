"""Commands a sharding proxy cannot serve get an error naming them; the connection stays usable."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Fleet
from tests.support import start_redis_servers, start_sidecar
from tests.support.resp import RawConnection, encode

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REFUSED: list[tuple[str, ...]] = [
    ("DBSIZE",),
    ("RANDOMKEY",),
    ("SCRIPT", "LOAD", "return 1"),
    ("SORT", "k", "BY", "w*"),
    ("SELECT", "1"),
    ("MOVE", "k", "1"),
    ("PUBLISH", "channel", "message"),
    ("WAIT", "1", "100"),
    ("XREAD", "BLOCK", "100", "STREAMS", "s", "$"),
    ("DISCARD",),
    ("SLOWLOG", "GET"),
    ("RENAME", "{KEY_A}", "{KEY_B}"),
    ("SINTER", "{KEY_A}", "{KEY_B}"),
    ("LMOVE", "{KEY_A}", "{KEY_B}", "LEFT", "LEFT"),
    ("ZUNIONSTORE", "{KEY_A}", "1", "{KEY_B}"),
    ("MSETNX", "{KEY_A}", "1", "{KEY_B}", "2"),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "maxmemory"),
    ("CONFIG", "SET", "maxmemory-samples", "7"),
    ("SUBSCRIBE", "channel"),
    ("PSUBSCRIBE", "chan*"),
    ("SSUBSCRIBE", "channel"),
    ("MULTI",),
    ("EXEC",),
    ("WATCH", "k"),
    ("BLPOP", "k", "1"),
    ("BRPOP", "k", "1"),
    ("BLMOVE", "a", "b", "LEFT", "LEFT", "1"),
    ("BZPOPMIN", "z", "1"),
    ("EVAL", "return redis.call('GET', KEYS[1])", "2", "{KEY_A}", "{KEY_B}"),
    ("EVALSHA", "0" * 40, "2", "{KEY_A}", "{KEY_B}"),
    ("CLIENT", "KILL", "ID", "1"),
    ("MONITOR",),
]


def _with_keys_on_two_shards(command: tuple[str, ...], fleet: Fleet) -> tuple[str, ...]:
    """Scripts are refused when their keys span shards: pick two keys that surely do."""
    ring = fleet.ring()
    key_a = "script:a"
    key_b = next(
        f"script:{i}"
        for i in range(1000)
        if ring.shard_for(f"script:{i}".encode()) != ring.shard_for(key_a.encode())
    )
    names = {"{KEY_A}": key_a, "{KEY_B}": key_b}
    return tuple(names.get(arg, arg) for arg in command)


@pytest.mark.parametrize("command", REFUSED, ids=lambda c: " ".join(c[:2]))
def test_refused_command_names_itself_and_connection_survives(
    command: tuple[str, ...], clean_fleet: Fleet
) -> None:
    command = _with_keys_on_two_shards(command, clean_fleet)
    with RawConnection(clean_fleet.proxy.port, timeout=5.0) as connection:
        assert connection.call("SET", "guard", "kept") == b"+OK\r\n"
        reply = connection.call(*command)
        assert reply.startswith(b"-"), f"{command[0]} was served, not refused: {reply[:80]!r}"
        assert command[0].lower().encode() in reply.lower(), f"error does not name it: {reply!r}"
        # The same connection keeps working, and nothing the refused command might do happened.
        assert connection.call("GET", "guard") == b"$4\r\nkept\r\n"
        assert connection.call("PING") == b"+PONG\r\n"
    for shard in clean_fleet.shards:
        with shard.client() as client:
            assert client.config_get("maxmemory-samples") == {"maxmemory-samples": "5"}


# Commands that would take a shard down or change it for everyone, if they were forwarded: run on
# their own processes so a failure here cannot spoil the other tests.
DANGEROUS: list[tuple[str, ...]] = [
    ("SHUTDOWN", "NOSAVE"),
    ("DEBUG", "SLEEP", "0"),
    ("SWAPDB", "0", "1"),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("FAILOVER",),
    ("FLUSHALL",),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("CLIENT", "PAUSE", "10000"),
    ("ACL", "SETUSER", "intruder", "on", ">pw", "+@all"),
]


def test_dangerous_commands_never_reach_a_shard() -> None:
    with start_redis_servers(2) as shards, start_sidecar([s.address for s in shards]) as sidecar:
        with RawConnection(sidecar.port) as connection:
            for i in range(20):
                assert connection.call("SET", f"keep:{i}", "v") == b"+OK\r\n"
            for command in DANGEROUS:
                reply = connection.call(*command)
                assert reply.startswith(b"-"), f"{command} was served: {reply[:80]!r}"
                assert command[0].lower().encode() in reply.lower(), reply
            assert connection.call("GET", "keep:3") == b"$1\r\nv\r\n"
        for shard in shards:
            assert shard.alive(), f"shard {shard.address} went down"
            with shard.client(socket_timeout=2) as direct:
                assert direct.config_get("maxmemory") == {"maxmemory": "0"}
                assert direct.info("replication")["role"] == "master"
                assert "intruder" not in direct.acl_users()
        kept = sum(shard.app_keys() for shard in shards)
        assert kept == 20


def test_refusals_inside_a_pipeline_keep_reply_order(clean_fleet: Fleet) -> None:
    with RawConnection(clean_fleet.proxy.port) as connection:
        connection.send(
            encode("SET", "p1", "a")
            + encode("KEYS", "*")
            + encode("GET", "p1")
            + encode("MULTI")
            + encode("MGET", "p1", "nope")
            + encode("PING")
        )
        replies = connection.read_replies(6)
    assert replies[0] == b"+OK\r\n"
    assert replies[1].startswith(b"-") and b"keys" in replies[1].lower()
    assert replies[2] == b"$1\r\na\r\n"
    assert replies[3].startswith(b"-") and b"multi" in replies[3].lower()
    assert replies[4] == b"*2\r\n$1\r\na\r\n$-1\r\n"
    assert replies[5] == b"+PONG\r\n"
