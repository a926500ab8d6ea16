"""Commands the sidecar answers itself: what clients send on their own when they connect.

HELLO, AUTH, CLIENT SETINFO/SETNAME/GETNAME/ID/INFO, INFO, SELECT 0, PING, ECHO, QUIT, RESET
and a minimal COMMAND. Replies are shaped like Redis 7's for the connection's protocol
(redis-py 8 drops a connection whose HELLO fails, ioredis 5 needs INFO without ``loading:1``,
ioredis 6 falls back to RESP2 only on ``-NOPROTO``).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from typing import Protocol

from cachefleet.sidecar import resp
from cachefleet.sidecar.commands import COMMANDS, CommandSpec, Kind

REDIS_VERSION = b"7.0.0"
_STARTED = time.monotonic()

CLIENT_REFUSED_WHY = "clients connect to the sidecar, not to the shards"


class ClientState(Protocol):
    """The per-connection state local commands read and change."""

    id: int
    protocol: int
    name: bytes | None
    authed: bool
    closing: bool
    peer: str

    def client_password(self) -> bytes | None: ...

    def connected_clients(self) -> int: ...

    def listen_port(self) -> int: ...


def answer(client: ClientState, spec: CommandSpec, args: Sequence[bytes]) -> bytes:
    handler = _HANDLERS[spec.name]
    return handler(client, args)


def _wrong_arity(name: str) -> bytes:
    return resp.error(f"ERR wrong number of arguments for '{name}' command")


def _ping(client: ClientState, args: Sequence[bytes]) -> bytes:
    if len(args) > 2:
        return _wrong_arity("ping")
    return resp.bulk(args[1]) if len(args) == 2 else resp.PONG


def _echo(client: ClientState, args: Sequence[bytes]) -> bytes:
    return resp.bulk(args[1])


def _quit(client: ClientState, args: Sequence[bytes]) -> bytes:
    client.closing = True
    return resp.OK


def _select(client: ClientState, args: Sequence[bytes]) -> bytes:
    try:
        index = int(args[1])
    except ValueError:
        return resp.error("ERR value is not an integer or out of range")
    if index == 0:
        return resp.OK
    return resp.error("ERR SELECT is not supported by cachefleet: the fleet has one database (0)")


def _password_ok(client: ClientState, user: bytes, password: bytes) -> bool:
    expected = client.client_password()
    if expected is None:
        return True  # like Redis's default user with nopass
    return user == b"default" and hmac.compare_digest(password, expected)


WRONGPASS = resp.error("WRONGPASS invalid username-password pair or user is disabled.")


def _auth(client: ClientState, args: Sequence[bytes]) -> bytes:
    if len(args) > 3:
        return resp.error("ERR syntax error")
    if len(args) == 2 and client.client_password() is None:
        return resp.error(
            "ERR AUTH <password> called without any password configured for the default user. "
            "Are you sure your configuration is correct?"
        )
    user = args[1] if len(args) == 3 else b"default"
    if not _password_ok(client, user, args[-1]):
        return WRONGPASS
    client.authed = True
    return resp.OK


def hello_reply(client: ClientState) -> bytes:
    protocol = client.protocol
    pairs = [
        (resp.bulk(b"server"), resp.bulk(b"redis")),
        (resp.bulk(b"version"), resp.bulk(REDIS_VERSION)),
        (resp.bulk(b"proto"), resp.integer(protocol)),
        (resp.bulk(b"id"), resp.integer(client.id)),
        (resp.bulk(b"mode"), resp.bulk(b"standalone")),
        (resp.bulk(b"role"), resp.bulk(b"master")),
        (resp.bulk(b"modules"), resp.array([])),
    ]
    return resp.mapping(pairs, protocol)


def _hello(client: ClientState, args: Sequence[bytes]) -> bytes:
    protocol = client.protocol
    if len(args) >= 2:
        try:
            protocol = int(args[1])
        except ValueError:
            return resp.error("ERR Protocol version is not an integer or out of range")
        if protocol not in (2, 3):
            return resp.error("NOPROTO unsupported protocol version")
    name: bytes | None = None
    authenticate: tuple[bytes, bytes] | None = None
    i = 2
    while i < len(args):
        option = args[i].upper()
        if option == b"AUTH" and i + 2 < len(args):
            authenticate = (args[i + 1], args[i + 2])
            i += 3
        elif option == b"SETNAME" and i + 1 < len(args):
            name = args[i + 1]
            i += 2
        else:
            return resp.error(
                f"ERR Syntax error in HELLO option '{args[i].decode('utf-8', 'replace')}'"
            )
    if authenticate is not None:
        if not _password_ok(client, *authenticate):
            return WRONGPASS
        client.authed = True
    if not client.authed:
        return resp.error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time"
        )
    if name is not None:
        if not _valid_name(name):
            return _BAD_NAME
        client.name = name or None
    client.protocol = protocol
    return hello_reply(client)


_BAD_NAME = resp.error("ERR Client names cannot contain spaces, newlines or special characters.")


def _valid_name(name: bytes) -> bool:
    return all(33 <= byte <= 126 for byte in name)


def _client(client: ClientState, args: Sequence[bytes]) -> bytes:
    sub = args[1].upper()
    argc = len(args)
    if sub == b"SETINFO":
        if argc != 4:
            return _wrong_arity("client|setinfo")
        if args[2].upper() not in (b"LIB-NAME", b"LIB-VER"):
            return resp.error(f"ERR Unrecognized option '{args[2].decode('utf-8', 'replace')}'")
        return resp.OK
    if sub == b"SETNAME":
        if argc != 3:
            return _wrong_arity("client|setname")
        if not _valid_name(args[2]):
            return _BAD_NAME
        client.name = args[2] or None
        return resp.OK
    if sub == b"GETNAME":
        return resp.bulk(client.name) if client.name else resp.null(client.protocol)
    if sub == b"ID":
        return resp.integer(client.id)
    if sub == b"INFO":
        return resp.verbatim(_client_line(client), client.protocol)
    if sub in (
        b"KILL", b"LIST", b"PAUSE", b"UNPAUSE", b"REPLY", b"TRACKING", b"CACHING",
        b"GETREDIR", b"TRACKINGINFO", b"UNBLOCK", b"NO-EVICT", b"NO-TOUCH",
    ):  # fmt: skip
        return resp.error(
            f"ERR CLIENT {sub.decode('utf-8', 'replace')} is not supported by cachefleet: "
            f"{CLIENT_REFUSED_WHY}"
        )
    return resp.error(
        f"ERR unknown subcommand '{args[1][:128].decode('utf-8', 'replace')}'. Try CLIENT HELP."
    )


def _client_line(client: ClientState) -> bytes:
    name = (client.name or b"").decode("ascii", "replace")
    return (
        f"id={client.id} addr={client.peer} laddr=127.0.0.1:{client.listen_port()} "
        f"name={name} db=0 resp={client.protocol}\n"
    ).encode()


def info_text(client: ClientState) -> bytes:
    lines = [
        "# Server",
        f"redis_version:{REDIS_VERSION.decode()}",
        "redis_mode:standalone",
        "proxy:cachefleet",
        "arch_bits:64",
        f"tcp_port:{client.listen_port()}",
        f"uptime_in_seconds:{int(time.monotonic() - _STARTED)}",
        "",
        "# Clients",
        f"connected_clients:{client.connected_clients()}",
        "",
        "# Persistence",
        "loading:0",
        "",
        "# Replication",
        "role:master",
        "connected_slaves:0",
        "",
        "# Keyspace",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def _info(client: ClientState, args: Sequence[bytes]) -> bytes:
    return resp.verbatim(info_text(client), client.protocol)


def _reset(client: ClientState, args: Sequence[bytes]) -> bytes:
    client.protocol = 2
    client.name = None
    client.authed = client.client_password() is None
    return resp.simple(b"RESET")


def _command_entry(spec: CommandSpec, protocol: int) -> bytes:
    empty_set = b"~0\r\n" if protocol == 3 else b"*0\r\n"
    if spec.kind == Kind.SINGLE:
        first, last, step = spec.key_index, spec.key_index, 1
    elif spec.kind in (Kind.SPLIT, Kind.SAME_SHARD):
        first, last, step = 1, -1, spec.step
    else:
        first = last = step = 0
    return resp.array(
        [
            resp.bulk(spec.name.encode()),
            resp.integer(spec.arity),
            empty_set,
            resp.integer(first),
            resp.integer(last),
            resp.integer(step),
            empty_set,
            b"*0\r\n",
            b"*0\r\n",
            b"*0\r\n",
        ]
    )


def _served() -> list[CommandSpec]:
    seen: dict[str, CommandSpec] = {}
    for spec in COMMANDS.values():
        if spec.kind != Kind.REFUSED:
            seen[spec.name] = spec
    return [seen[name] for name in sorted(seen)]


def _command(client: ClientState, args: Sequence[bytes]) -> bytes:
    protocol = client.protocol
    if len(args) == 1:
        return resp.array([_command_entry(s, protocol) for s in _served()])
    sub = args[1].upper()
    if sub == b"COUNT":
        return resp.integer(len(_served()))
    if sub == b"LIST":
        return resp.array([resp.bulk(s.name.encode()) for s in _served()])
    if sub == b"DOCS":
        return resp.mapping([], protocol)
    if sub == b"INFO":
        entries = []
        for name in args[2:]:
            spec = COMMANDS.get(name.lower())
            served = spec is not None and spec.kind != Kind.REFUSED
            entries.append(
                _command_entry(spec, protocol) if spec and served else resp.null(protocol)
            )
        return resp.array(entries)
    return resp.error(
        f"ERR unknown subcommand '{args[1][:128].decode('utf-8', 'replace')}'. Try COMMAND HELP."
    )


_HANDLERS = {
    "ping": _ping,
    "echo": _echo,
    "quit": _quit,
    "select": _select,
    "auth": _auth,
    "hello": _hello,
    "client": _client,
    "info": _info,
    "reset": _reset,
    "command": _command,
}
