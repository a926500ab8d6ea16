"""The load and the probes of ``bench/failover.py``: asyncio tasks that talk RESP to the proxy
and to the shards and write down what they saw, as plain lists of ``time.monotonic`` times.

- ``worker``: open loop at a fixed rate, one step per tick on its own keys, one connection.
  Two step shapes, half the workers each: *read first* (GET the key, judged against the last
  acknowledged write; SET a new value; GET it back), which finds old values a shard brings back
  after an outage because every key's first request after it is a read; and *write first*
  (SET, then GET), so writes as well as reads are in flight when a shard dies or hangs.
- ``sample_commands``: INFO stats of one server every ``SAMPLE_SECONDS``.
- ``watch_sidecar``: the failed shard's state as the sidecar's ``/shards`` reports it.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis

from bench.failover_accounting import (
    BAD_READS,
    CounterSample,
    KeyLedger,
    ReadVerdict,
    failure_kind,
)
from tests.support import Sidecar
from tests.support.resp import encode

SAMPLE_SECONDS = 0.25
SHOW_BAD_READS = 5  # bad reads kept in full for the report


class RequestFailed(Exception):
    pass


class Client:
    """One RESP2 connection with a deadline per request; after a failure it reconnects on the
    next request, as a client library would (and never retries on its own)."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.parser = hiredis.Reader()

    async def call(self, *args: bytes) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                if self.reader is None or self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                    sock = self.writer.get_extra_info("socket")
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.parser = hiredis.Reader()
                self.writer.write(encode(*args))
                reply = self.parser.gets()
                while reply is False:
                    data = await self.reader.read(65536)
                    if not data:
                        raise ConnectionError("connection closed by the server")
                    self.parser.feed(data)
                    reply = self.parser.gets()
        except TimeoutError:
            self.close()
            raise RequestFailed(f"no reply within {self.timeout:g} s (client timeout)") from None
        except OSError as error:
            self.close()
            raise RequestFailed(f"{type(error).__name__}: {error.strerror or error}") from None
        if isinstance(reply, hiredis.ReplyError):
            raise RequestFailed(str(reply))
        return reply

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None


@dataclass
class Record:
    """What the load saw."""

    sent: list[float] = field(default_factory=list)
    succeeded: list[float] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (done, seconds)
    failures: list[tuple[float, str, str]] = field(default_factory=list)  # (done, op, kind)
    reads: list[tuple[float, ReadVerdict]] = field(default_factory=list)
    bad_reads: list[dict[str, Any]] = field(default_factory=list)
    missed_ticks: int = 0

    async def request(self, client: Client, op: str, *args: bytes) -> tuple[bool, Any]:
        started = time.monotonic()
        self.sent.append(started)
        try:
            reply = await client.call(op.encode(), *args)
        except RequestFailed as error:
            self.failures.append((time.monotonic(), op, failure_kind(str(error))))
            return False, None
        done = time.monotonic()
        self.succeeded.append(done)
        self.latencies.append((done, done - started))
        return True, reply


@dataclass
class Traffic:
    """Shared by the workers: the ledger of what was written and the record of what was seen."""

    ledger: KeyLedger = field(default_factory=KeyLedger)
    record: Record = field(default_factory=Record)

    async def read(self, client: Client, key: bytes) -> None:
        ok, value = await self.record.request(client, "GET", key)
        if not ok:
            return
        verdict = self.ledger.judge(key, value)
        now = time.monotonic()
        self.record.reads.append((now, verdict))
        if verdict in BAD_READS and len(self.record.bad_reads) < SHOW_BAD_READS:
            expected = self.ledger.last_acked(key)
            self.record.bad_reads.append(
                {
                    "at": now,
                    "key": key.decode(),
                    "read": value.decode(errors="replace"),
                    "last_acked": expected.decode() if expected else None,
                    "verdict": str(verdict),
                }
            )

    async def write(self, client: Client, key: bytes) -> None:
        value = self.ledger.next_value(key)
        ok, reply = await self.record.request(client, "SET", key, value)
        if ok and reply == b"OK":
            self.ledger.acked(key, value)
        else:
            self.ledger.failed(key, value)

    async def read_first(self, client: Client, key: bytes) -> None:
        await self.read(client, key)
        await self.write(client, key)
        await self.read(client, key)

    async def write_first(self, client: Client, key: bytes) -> None:
        await self.write(client, key)
        await self.read(client, key)

    async def preload(self, client: Client, keys: Sequence[bytes]) -> None:
        for key in keys:
            value = self.ledger.next_value(key)
            if await client.call(b"SET", key, value) != b"OK":
                raise RuntimeError(f"preloading {key!r} through the proxy failed")
            self.ledger.acked(key, value)


STEP_REQUESTS = {"read_first": 3, "write_first": 2}


async def worker(
    traffic: Traffic,
    client: Client,
    shape: str,
    keys: Sequence[bytes],
    interval: float,
    stopping: asyncio.Event,
) -> None:
    """One step per ``interval`` over ``keys`` in turn; a step that overran its tick makes the
    worker skip the ticks it missed (counted), never burst to catch up."""
    step = traffic.read_first if shape == "read_first" else traffic.write_first
    next_at = time.monotonic() + random.uniform(0, interval)
    position = 0
    while not stopping.is_set():
        wait = next_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await step(client, keys[position % len(keys)])
        position += 1
        next_at += interval
        now = time.monotonic()
        if next_at < now:
            traffic.record.missed_ticks += int((now - next_at) / interval)
            next_at = now
    client.close()


async def sample_commands(port: int, samples: list[CounterSample], stopping: asyncio.Event) -> None:
    """INFO stats on one server every SAMPLE_SECONDS. A server that does not answer in time is
    skipped: its next bin is then longer."""
    client = Client(port, SAMPLE_SECONDS * 0.8)
    next_at = time.monotonic()
    while not stopping.is_set():
        started = time.monotonic()
        try:
            info = await client.call(b"INFO", b"stats")
        except RequestFailed:
            pass
        else:
            samples.append(CounterSample((started + time.monotonic()) / 2, commands_of(info)))
        next_at += SAMPLE_SECONDS
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    client.close()


def commands_of(info: bytes) -> int:
    for line in info.split(b"\r\n"):
        if line.startswith(b"total_commands_processed:"):
            return int(line.split(b":", 1)[1])
    raise RuntimeError("INFO stats has no total_commands_processed")


async def watch_sidecar(
    sidecar: Sidecar, shard: str, states: list[tuple[float, str]], stopping: asyncio.Event
) -> None:
    """Each change of ``shard``'s state in the sidecar's /shards, with its time."""
    while not stopping.is_set():
        started = time.monotonic()
        try:
            status, body = await asyncio.to_thread(sidecar.admin_get, "/shards")
        except OSError:
            status, body = 0, ""
        if status == 200:
            entries = {entry["name"]: entry for entry in json.loads(body)["shards"]}
            state = str(entries[shard]["state"])
            if not states or states[-1][1] != state:
                states.append(((started + time.monotonic()) / 2, state))
        await asyncio.sleep(0.05)
