"""The C loops (``_speedups``) against the pure-Python reference, on valid and malformed input.

The request scanner in ``route_requests`` is checked against what the hiredis path computes
(hiredis + request_end): every request it claims must be exactly what that path would cut, and
it must never claim anything else. Its route decision must equal ``RouteTable.decide`` in
Python. The reply walk in ``deliver_replies`` must equal ``resp.split_replies`` wherever it
answers (it returns None to hand odd length fields to the reference). Then whole byte streams
go through a real sidecar twice, with and without the C loops, and must get the same replies.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import random
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import hiredis
import pytest
from cachefleet.ring import Shard, classic_ring, key_hash
from cachefleet.sidecar import flusher as flusher_module
from cachefleet.sidecar import pool, resp, server
from cachefleet.sidecar.flusher import HOLD_UNDER_PER_SHARD
from cachefleet.sidecar.resp import ProtocolError
from cachefleet.sidecar.route_table import FAST_COMMANDS, Mode, RouteClass, RouteTable
from cachefleet.sidecar.shadow import ShadowRoute
from cachefleet.sidecar.slots import PartSlot, Slot
from cachefleet.sidecar.stats import HEALTH_BUCKETS, LATENCY_BUCKETS, Latency
from cachefleet.sidecar.warmup import WarmupRouting, WarmupStats
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import Shard_, flush, make_config, start_sidecar

native = pytest.importorskip("cachefleet.sidecar._speedups", reason="C extension not built")

RING = classic_ring([Shard(f"shard-{i}") for i in range(4)])
RING_LOOKUP = RING.lookup_function()
NATIVE_RING = native.Ring(RING.tokens, RING.owners)
PLAIN = native.RouteTable(NATIVE_RING, FAST_COMMANDS, bytes(4))
STOP_END, STOP_DISPATCH, STOP_UNCLAIMED, STOP_ROUTE = range(4)


def scan(buf: bytes | bytearray, pos: int) -> tuple[list[bytes], int, bool]:
    """The scanner alone (no targets: every request stops for the dispatcher): the requests
    it claims from ``pos``, where it stopped, and whether it stopped at bytes it does not claim."""
    found: list[bytes] = []
    while True:
        pos, stop, end, owner, reason = native.route_requests(
            buf, pos, PLAIN, None, None, None, Slot, None, None, pool.READY, 1 << 40
        )
        assert (owner, reason) == (-1, 0)
        if stop != STOP_DISPATCH:
            assert end == pos
            return found, pos, stop == STOP_UNCLAIMED
        raw = buf[pos:end]
        found.append(bytes(raw))
        pos = end


def c_split(buf: bytes) -> tuple[list[bytes], int] | None:
    """The reply walk of deliver_replies, each reply given to a part slot that keeps it."""
    got: list[bytes] = []

    class Keep:
        def part_done(self, slot: Slot, reply: bytes) -> None:
            got.append(reply)

    keep = Keep()
    waiters = collections.deque(PartSlot(keep) for _ in range(len(buf)))
    # Push frames go to their own callback; kept in the same list, the order is the reference's.
    done = native.deliver_replies(buf, waiters, print, got.append)
    if done is None:
        return None
    count, pos, orphan = done
    assert not orphan and count == len([r for r in got if r[:1] != b">"])
    return got, pos


# -- strategies --------------------------------------------------------------------------------

arguments = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from([b"GET", b"SET", b"k", b"", b"\r\n"])),
    min_size=1,
    max_size=12,
)
requests = st.lists(arguments, min_size=1, max_size=6).map(
    lambda rs: b"".join(resp.encode_request(r) for r in rs)
)


def _mutate(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        at = rng.randint(0, len(out))
        if op == 0 and out:
            out[min(at, len(out) - 1)] = rng.choice(b"*$:+-%|~>=!_,#(\r\n0123456789x ")
        elif op == 1:
            out[at:at] = bytes([rng.choice(b"*$\r\n-0123456789_ +")])
        elif op == 2 and out:
            del out[min(at, len(out) - 1)]
        else:
            out = out[:at]
    return bytes(out)


def reply_tree(depth: int) -> st.SearchStrategy[bytes]:
    leaves = st.one_of(
        st.binary(max_size=20).map(lambda b: b"$%d\r\n%s\r\n" % (len(b), b)),
        st.integers(-(10**20), 10**20).map(lambda n: b":%d\r\n" % n),
        st.sampled_from(
            [b"+OK\r\n", b"-ERR x\r\n", b"$-1\r\n", b"*-1\r\n", b"_\r\n", b",1.5\r\n", b"#t\r\n"]
        ),
        st.binary(max_size=12).map(lambda b: b"=%d\r\ntxt:%s\r\n" % (len(b) + 4, b)),
        st.binary(max_size=12).map(lambda b: b"!%d\r\n%s\r\n" % (len(b), b)),
    )
    if depth == 0:
        return leaves
    inner = reply_tree(depth - 1)
    return st.one_of(
        leaves,
        st.lists(inner, max_size=4).flatmap(
            lambda xs: st.sampled_from(b"*~>").map(
                lambda t: b"%c%d\r\n" % (t, len(xs)) + b"".join(xs)
            )
        ),
        st.lists(st.tuples(inner, inner), max_size=3).map(
            lambda ps: b"%%%d\r\n" % len(ps) + b"".join(k + v for k, v in ps)
        ),
        st.tuples(inner, inner, inner).map(lambda t: b"|1\r\n" + t[0] + t[1] + t[2]),
    )


replies = st.lists(reply_tree(3), min_size=1, max_size=6).map(b"".join)

# -- the request scanner -------------------------------------------------------------------------


def hiredis_request(buf: bytes, pos: int) -> tuple[list[bytes], int] | None:
    """The hiredis path from ``pos``: (args, end) of a complete request, None if incomplete.
    Raises on anything that path reports as an error."""
    reader = hiredis.Reader()
    reader.feed(buf[pos:])
    args = reader.gets()
    if args is False:
        return None
    return args, resp.request_end(buf, pos, args)


def check_scan(buf: bytes | bytearray) -> None:
    data = bytes(buf)
    found, pos, other = scan(buf, 0)
    at = 0
    for raw in found:
        reference = hiredis_request(data, at)
        assert reference is not None, "claimed a request hiredis sees as incomplete"
        _, end = reference
        assert raw == data[at:end]
        at = end
    assert pos == at
    if pos < len(data) and not other:
        # Stopped inside a request it would claim once complete: hiredis waits there too.
        assert data[pos] == 42  # '*'
        assert hiredis_request(data, pos) is None


@given(requests)
def test_scanner_claims_every_well_formed_request(buf: bytes) -> None:
    found, pos, other = scan(buf, 0)
    assert (pos, other) == (len(buf), False)
    assert b"".join(found) == buf
    check_scan(buf)
    check_scan(bytearray(buf))


@given(requests, st.integers(0, 2**32))
def test_scanner_on_cut_and_mutated_requests(buf: bytes, seed: int) -> None:
    try:
        check_scan(_mutate(buf, seed))
    except (hiredis.ProtocolError, ProtocolError):
        pytest.fail("claimed a request the hiredis path refuses")


@given(st.binary(max_size=200))
def test_scanner_on_garbage(buf: bytes) -> None:
    try:
        check_scan(buf)
        check_scan(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" + buf)
    except (hiredis.ProtocolError, ProtocolError):
        pytest.fail("claimed a request the hiredis path refuses")


def test_scanner_starts_at_pos_and_leaves_odd_requests_to_hiredis() -> None:
    get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    found, pos, other = scan(b"xx" + get, 2)
    assert found == [get] and (pos, other) == (len(get) + 2, False)
    for odd in (
        b"*02\r\n",  # leading zero
        b"*0\r\n",
        b"*-1\r\n",
        b"*2\r\n$3\r\nGET\r\n+k\r\n",  # not a bulk string
        b"*2\r\n$3\r\nGETxx$1\r\nk\r\n",  # no CRLF after the payload: hiredis accepts it
        b"*2\r\n$+3\r\nGET\r\n$1\r\nk\r\n",
        b"*1048577\r\n",  # more arguments than Redis allows
        b"PING\r\n",
    ):
        assert scan(get + odd, 0)[1:] == (len(get), True), odd
    assert scan(get + b"*2\r\n$3\r\nGE", 0)[1:] == (len(get), False)
    assert scan(b"*1\r\n$99999999999999\r\nab", 0)[1:] == (0, False)
    assert scan(b"*1\r\n$9999999999999999\r\nab", 0)[1:] == (0, True)
    with pytest.raises(ValueError):
        scan(get, len(get) + 1)


@given(st.one_of(st.binary(max_size=40), st.from_regex(rb"\A[a-z{}]{0,12}\Z")))
def test_ring_lookup_equals_the_rings_own(key: bytes) -> None:
    assert NATIVE_RING.lookup(key) == RING_LOOKUP(key)
    assert PLAIN.decide(key) == (RING_LOOKUP(key), 0)


def test_ring_lookup_on_rings_of_any_shape() -> None:
    rng = random.Random(3)
    for shards in (1, 2, 7):
        ring = classic_ring([Shard(f"s{i}") for i in range(shards)])
        mine = native.Ring(ring.tokens, ring.owners)
        lookup = ring.lookup_function()
        for _ in range(2000):
            key = rng.randbytes(rng.randint(0, 9)) + rng.choice([b"", b"{", b"}", b"{a}", b"{}x"])
            assert mine.lookup(key) == lookup(key)
    with pytest.raises(ValueError):
        native.Ring([2, 1], [0, 0])
    with pytest.raises(ValueError):
        native.Ring([], [])
    with pytest.raises(TypeError):
        native.route_requests(b"", 0, None, None, None, None, Slot, None, None, 0, 0)
    with pytest.raises(ValueError):
        native.RouteTable(NATIVE_RING, FAST_COMMANDS, bytes(3))  # an owner without a stop


# -- the reply splitter --------------------------------------------------------------------------


def check_split(buf: bytes) -> None:
    try:
        reference: tuple[list[bytes], int] | Exception = resp.split_replies(buf)
    except ValueError as error:
        reference = error
    found = c_split(buf)
    if found is None:
        return  # the caller runs the reference
    assert not isinstance(reference, Exception), f"reference raised {reference!r}, C answered"
    assert found == reference


@given(replies)
def test_splitter_equals_the_reference(buf: bytes) -> None:
    found = c_split(buf)
    assert found is not None and found == resp.split_replies(buf)
    assert b"".join(found[0]) == buf and found[1] == len(buf)


@given(replies, st.integers(0, 2**32))
def test_splitter_on_cut_and_mutated_replies(buf: bytes, seed: int) -> None:
    check_split(_mutate(buf, seed))


@given(st.binary(max_size=200))
def test_splitter_on_garbage(buf: bytes) -> None:
    check_split(buf)
    check_split(b"+OK\r\n" + buf)


def test_splitter_hands_odd_lengths_to_the_reference() -> None:
    assert c_split(b"$ 3\r\nabc\r\n") is None  # int() takes it; C does not
    assert c_split(b"*1_0\r\n") is None
    assert c_split(b"*99999999999999999999\r\n:1\r\n") is None
    assert c_split(b"$-99\r\n:1\r\n") == ([b"$-99\r\n", b":1\r\n"], 10)
    assert c_split(b"*2\r\n:1\r\n") == ([], 0)
    assert c_split(b"+OK\r") == ([], 0)


def test_garbage_for_a_while_never_crashes() -> None:
    """Random bytes and mutated frames through both functions: a crash kills pytest."""
    rng = random.Random(4)
    frames = [
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n",
        b"*2\r\n$1\r\na\r\n%1\r\n+k\r\n$1\r\nv\r\n|1\r\n+a\r\n:1\r\n:2\r\n",
    ]
    for _ in range(20_000):
        if rng.random() < 0.5:
            buf = rng.randbytes(rng.randint(0, 64))
        else:
            buf = _mutate(rng.choice(frames) * rng.randint(1, 3), rng.getrandbits(32))
        scan(buf, 0)
        scan(bytearray(buf), rng.randint(0, len(buf)))
        check_split(buf)


# -- route_requests and deliver_replies: the per-request steps in C ------------------------------


class FakeConn:
    def __init__(self, state: int = pool.READY) -> None:
        self.state = state
        self.out: list[bytes] = []
        self.waiters: collections.deque[Slot] = collections.deque()
        self.dirty = False
        self.sent: list[tuple[bytes, Slot]] = []

    def send(self, raw: bytes, slot: Slot) -> None:
        self.sent.append((raw, slot))


class FakeClient:
    def __init__(self) -> None:
        self.pending: collections.deque[Slot] = collections.deque()
        self.closing = False
        self.dirty = False
        self.written: list[bytes] = []
        self.transport = self
        self.fd = -1  # no socket: write_now goes through write()

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def mark_dirty(self) -> None:
        self.dirty = True


def enqueue(
    buf: bytes | bytearray,
    pos: int,
    targets: list[tuple[FakeConn, dict[object, int]]],
    table: object = PLAIN,
) -> tuple[tuple[int, int, int, int, int], FakeClient, list[FakeConn]]:
    client = FakeClient()
    added: list[FakeConn] = []

    def add_backend(conn: FakeConn) -> None:
        conn.dirty = True
        added.append(conn)

    done = native.route_requests(
        buf, pos, table, targets, client, client.pending.append, Slot, add_backend,
        client.mark_dirty, pool.READY, 1000,
    )  # fmt: skip
    return done, client, added


def test_route_requests_queues_fast_requests_like_the_python_loop() -> None:
    targets = [(FakeConn(), {}) for _ in range(4)]
    targets[3] = (FakeConn(state=pool.CONNECTING), {})
    keys = [b"k%d" % i for i in range(40)]
    reqs = [resp.encode_request([b"GET", k]) for k in keys]
    (pos, stop, _, _, _), client, added = enqueue(b"".join(reqs) + reqs[0][:7], 0, targets)
    assert (pos, stop) == (sum(map(len, reqs)), STOP_END)
    assert len(client.pending) == len(reqs)
    assert all(type(s) is Slot and s.client is client and s.reply is None for s in client.pending)
    get = FAST_COMMANDS[b"GET"][0]
    for i, (conn, counts) in enumerate(targets):
        mine = [j for j, k in enumerate(keys) if RING_LOOKUP(k) == i]
        sent = conn.out if i != 3 else [raw for raw, _ in conn.sent]
        slots = list(conn.waiters) if i != 3 else [slot for _, slot in conn.sent]
        assert sent == [reqs[j] for j in mine]
        assert slots == [client.pending[j] for j in mine]
        assert counts == ({get: len(mine)} if mine else {})
    # Each ready connection registered once (then dirty), the connecting one never.
    assert sorted(map(id, added)) == sorted(id(t[0]) for t in targets[:3] if t[0].out)


@pytest.mark.parametrize(
    "odd",
    [
        [b"PING"],  # not a fast command
        [b"GET"],  # no key
        [b"GET", b"a", b"b"],  # wrong arity
        [b"MGET", b"a", b"b"],  # multi-key
        [b"SET", b"k", b"x" * 2000],  # over max_bytes
    ],
)
def test_route_requests_stops_at_what_python_must_handle(odd: list[bytes]) -> None:
    targets = [(FakeConn(), {}) for _ in range(4)]
    get = resp.encode_request([b"GET", b"a"])
    request = resp.encode_request(odd)
    for buf in (get + request + get, bytearray(get + request)):
        (pos, stop, end, _, _), client, _ = enqueue(buf, 0, targets)
        assert (pos, stop, end) == (len(get), STOP_DISPATCH, len(get) + len(request))
        assert len(client.pending) == 1
    (pos, stop, _, _, _), _, _ = enqueue(get + b"PING\r\n", 0, targets)
    assert (pos, stop) == (len(get), STOP_UNCLAIMED)
    (pos, stop, _, _, _), _, _ = enqueue(get + b"*2\r\n$3\r\nGE", 0, targets)
    assert (pos, stop) == (len(get), STOP_END)


def test_route_requests_hands_a_diverted_owner_to_its_route_unit_and_goes_on() -> None:
    """One stop per request for the diverted owner; the others are queued around it."""
    diverted = 2
    table = native.RouteTable(NATIVE_RING, FAST_COMMANDS, bytes([0, 0, 7, 0]))
    keys = [b"k%d" % i for i in range(30)]
    reqs = [resp.encode_request([b"SET", k, b"v"]) for k in keys]
    buf = b"".join(reqs)
    targets = [(FakeConn(), {}) for _ in range(4)]
    pos, queued, stopped = 0, 0, []
    while True:
        (pos, stop, end, owner, reason), client, _ = enqueue(buf, pos, targets, table)
        queued += len(client.pending)
        if stop == STOP_END:
            break
        assert stop == STOP_ROUTE and (owner, reason) == (diverted, 7)
        stopped.append(buf[pos:end])
        pos = end
    mine = [reqs[j] for j, k in enumerate(keys) if RING_LOOKUP(k) == diverted]
    assert stopped == mine and mine
    assert queued == len(keys) - len(mine)
    assert targets[diverted][0].out == []


def test_route_requests_looks_each_command_up_in_the_tables_own_copy() -> None:
    """A pipeline that changes command at every request, and a table whose fast dict was
    changed after it was built: each request still counted under its own command."""
    fast = dict(FAST_COMMANDS)
    table = native.RouteTable(NATIVE_RING, fast, bytes(4))
    del fast[b"GET"]  # the table's copy keeps it
    names = [b"GET", b"SET", b"SET", b"GET", b"INCR", b"GET"]
    reqs = [
        resp.encode_request([n, b"k%d" % i, b"v"] if n == b"SET" else [n, b"k%d" % i])
        for i, n in enumerate(names)
    ]
    targets = [(FakeConn(), {}) for _ in range(4)]
    (pos, stop, _, _, _), client, _ = enqueue(b"".join(reqs), 0, targets, table)
    assert (pos, stop, len(client.pending)) == (sum(map(len, reqs)), STOP_END, len(reqs))
    counted: collections.Counter[object] = collections.Counter()
    for _, counts in targets:
        counted.update(counts)
    specs = {n: FAST_COMMANDS[n][0] for n in names}
    assert counted == collections.Counter(specs[n] for n in names)


def test_route_requests_reads_the_hot_key_clock_once_per_read() -> None:
    reads: list[int] = []

    def clock() -> int:
        reads.append(1)
        return 5_000_000_000

    tracker = native.HotKeys(64, 4, clock=clock)
    table = native.RouteTable(NATIVE_RING, FAST_COMMANDS, bytes(4), tracker=tracker)
    reqs = b"".join(resp.encode_request([b"GET", b"celebrity"]) for _ in range(5))
    before = len(reads)
    (pos, stop, _, _, _), client, _ = enqueue(reqs, 0, [(FakeConn(), {}) for _ in range(4)], table)
    assert (pos, stop, len(client.pending)) == (len(reqs), STOP_END, 5)
    assert len(reads) - before == 1  # five requests of one read: one clock read
    assert tracker.estimate(key_hash(b"celebrity")) == 5  # each of them counted


NEXT_RING = classic_ring([Shard(f"shard-{i}") for i in range(5)])


@settings(max_examples=300)
@given(
    st.one_of(st.binary(max_size=30), st.from_regex(rb"\A[a-z{}:0-9]{0,12}\Z")),
    st.lists(st.sampled_from([0, 0, 0, 1, 2]), min_size=5, max_size=5),
    st.sampled_from(list(Mode)),
    st.integers(0, 10_000),
    st.sampled_from(list(RouteClass)),
)
def test_the_c_decision_equals_the_python_one(
    key: bytes, stops: list[int], mode: Mode, basis_points: int, klass: RouteClass
) -> None:
    """The whole decision, ejections and a 4 -> 5 warm-up included, in C and in Python."""
    ring = classic_ring([Shard(f"shard-{i}") for i in range(4)])
    warmup = None
    native_other = None
    if mode != Mode.NONE:
        other = NEXT_RING
        warmup = WarmupRouting(
            mode, other.lookup_function(), basis_points, (), WarmupStats(), ShadowRoute,
            lambda name: True,
        )  # fmt: skip
        native_other = native.Ring(other.tokens, other.owners)
    python = RouteTable("v", ring.lookup_function(), (), bytes(stops), (), None, warmup)
    table = native.RouteTable(
        native.Ring(ring.tokens, ring.owners), FAST_COMMANDS, bytes(stops), native_other,
        int(mode), basis_points,
    )  # fmt: skip
    assert table.decide(key, int(klass)) == python.decide(key, klass)


def _delivery(
    buf: bytes, slots: int, only: bool
) -> tuple[tuple[int, int, bool] | None, list[FakeClient], list[Slot], list[FakeClient]]:
    clients = [FakeClient() for _ in range(slots)]
    made = [Slot(c) for c in clients]
    for client, slot in zip(clients, made, strict=True):
        client.pending.append(slot)
        if not only:
            client.pending.append(Slot(client))
    added: list[FakeClient] = []

    def add_client(client: FakeClient) -> None:
        client.dirty = True
        added.append(client)

    return native.deliver_replies(buf, collections.deque(made), add_client), clients, made, added


@settings(max_examples=100, deadline=None)
@given(replies, st.booleans())
def test_deliver_gives_each_reply_to_its_slot(buf: bytes, only: bool) -> None:
    expected, end = resp.split_replies(buf + b"*3\r\n:1")
    expected = [r for r in expected if r[:1] != b">"]  # push frames take no slot
    done, clients, made, added = _delivery(buf + b"*3\r\n:1", len(expected), only)
    assert done == (len(expected), end, False)
    for client, slot, raw in zip(clients, made, expected, strict=True):
        if only:  # the client's only request: written at once, its slot gone
            assert client.written == [raw] and not client.pending
        else:  # behind another one: stored, the client registered once
            assert slot.reply == raw and not client.written and client.dirty
    assert len(added) == (0 if only else len(expected))


def test_deliver_orphans_fallbacks_and_part_slots() -> None:
    done, _, _, _ = _delivery(b":1\r\n:2\r\n:3\r\n", 2, True)
    assert done == (2, 8, True)
    assert native.deliver_replies(b":1\r\n$+3\r\nabc\r\n", collections.deque(), print) is None
    got: list[tuple[Slot, bytes]] = []

    class Parent:
        def part_done(self, slot: Slot, reply: bytes) -> None:
            got.append((slot, reply))

    part = PartSlot(Parent(), 1)
    gone = Slot(None)  # a plain slot without a client: consumed, dropped
    assert native.deliver_replies(b"+a\r\n+b\r\n", collections.deque([part, gone]), print) == (
        2,
        8,
        False,
    )
    assert got == [(part, b"+a\r\n")]
    closing = FakeClient()
    closing.closing = True
    slot = Slot(closing)
    closing.pending.append(slot)
    assert native.deliver_replies(b"+c\r\n", collections.deque([slot]), print)
    assert slot.reply == b"+c\r\n" and not closing.written


PUSH = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"


@pytest.mark.parametrize("native_loop", [True, False])
async def test_push_frames_never_take_a_waiter(
    native_loop: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invalidation pushed between two replies goes to on_push; the replies still reach
    their own slots in order (the C loop and the Python one)."""
    from cachefleet.sidecar.flusher import Flusher
    from cachefleet.sidecar.stats import ShardStats

    if not native_loop:
        monkeypatch.setattr(pool, "make_shard_reader", None)
    settings = pool.ShardSettings("s", "127.0.0.1", 1, 1.0, 1.0, None, None)
    flusher = Flusher(asyncio.get_running_loop())
    conn = pool.BackendConnection(settings, 3, flusher, ShardStats(), tracking=True)
    got: list[tuple[int, bytes]] = []
    pushes: list[bytes] = []

    class Parent:
        def part_done(self, slot: Slot, reply: bytes) -> None:
            got.append((slot.index, reply))

    parent = Parent()
    conn.waiters.extend(PartSlot(parent, i) for i in range(2))
    conn.on_push = pushes.append
    conn.data_received(b"+first\r\n" + PUSH + b":2\r\n" + PUSH[:9])
    conn.data_received(PUSH[9:])
    assert got == [(0, b"+first\r\n"), (1, b":2\r\n")]
    assert pushes == [PUSH, PUSH]
    assert not conn.waiters


def test_the_new_loops_on_garbage_never_crash() -> None:
    rng = random.Random(5)
    frame = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n"
    for _ in range(5_000):
        if rng.random() < 0.5:
            buf = rng.randbytes(rng.randint(0, 64))
        else:
            buf = _mutate(frame * rng.randint(1, 3), rng.getrandbits(32))
        enqueue(buf, 0, [(FakeConn(), {}) for _ in range(4)])
        enqueue(bytearray(buf), rng.randint(0, len(buf)), [(FakeConn(), {}) for _ in range(4)])
        enqueue(
            buf,
            0,
            [(FakeConn(), {}) for _ in range(4)],
            native.RouteTable(NATIVE_RING, FAST_COMMANDS, bytes([1, 0, 2, 0])),
        )
        _delivery(buf, rng.randint(0, 4), rng.random() < 0.5)


# -- the same streams through a sidecar, with and without the C loops ------------------------------

STREAMS = [
    b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
    b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\nPING\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n"
    b"*3\r\n$6\r\nOBJECT\r\n$8\r\nENCODING\r\n$1\r\nn\r\n*1\r\n$4\r\nPING\r\n"
    b"*2\r\n$3\r\nGET\r\n+oops\r\n",
    b"*0\r\n*-1\r\n*2\r\n$3\r\nget\r\n$1\r\na\r\n*2\r\n$3\r\nGETxx$1\r\nb\r\n"
    b"*1\r\n$3\r\nGET\r\n*4\r\n$4\r\nMSET\r\n$1\r\nx\r\n$1\r\ny\r\n"
    b"*2\r\n$6\r\nEXISTS\r\n$1\r\nx\r\n*2\r\n$4\r\nNOPE\r\n$1\r\nz\r\n",
    b"*2\r\n$4\r\nECHO\r\n$3\r\nhi!\r\n*2\r\n$3\r\nGET\r\n$01\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
    b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n\x00garbage\r\n*1\r\n$4\r\nPING\r\n",
]


async def exchange(port: int, stream: bytes, chunks: list[int]) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        at = 0
        for size in [*chunks, len(stream)]:
            if at >= len(stream):
                break
            writer.write(stream[at : at + size])
            await writer.drain()
            await asyncio.sleep(0.005)
            at += size
        data = b""
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.5)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        writer.close()


@pytest.fixture
def pure_python(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    def switch() -> None:
        monkeypatch.setattr(server, "_route", None)
        monkeypatch.setattr(server, "make_fast_reader", None)
        monkeypatch.setattr(server, "make_client_writer", None)
        monkeypatch.setattr(pool, "make_shard_reader", None)

    yield switch


async def test_the_same_streams_give_the_same_replies_without_the_c_loops(
    shards: list[Shard_], pure_python: Callable[[], None]
) -> None:
    rng = random.Random(7)
    plans = [(s, sorted(rng.sample(range(1, len(s)), 3))) for s in STREAMS for _ in range(2)]
    plans = [(s, [b - a for a, b in zip([0, *cuts], cuts, strict=False)]) for s, cuts in plans]
    results: dict[str, list[bytes]] = {}
    for mode in ("native", "pure"):
        if mode == "pure":
            pure_python()
        app = await start_sidecar(lambda: make_config([s.address for s in shards]))
        try:
            results[mode] = []
            for stream, chunks in plans:
                flush(shards)
                results[mode].append(await exchange(app.listen_port, stream, chunks))
        finally:
            await app.stop()
    assert results["native"] == results["pure"]
    assert all(results["native"]), "every stream gets some reply"
    assert results["native"][0].count(b"\r\n") > 8


async def test_an_unexpected_error_in_the_c_data_received_costs_that_connection_only(
    shards: list[Shard_], caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the C loop (here: targets that are not (conn, counts) pairs) answers that client
    with an error and closes it, logs the traceback, and the sidecar serves everyone else."""
    flush(shards)
    app = await start_sidecar(lambda: make_config([s.address for s in shards]))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", app.listen_port)
        writer.write(resp.encode_request([b"SET", b"k", b"v"]))
        assert await reader.readexactly(5) == b"+OK\r\n"
        (client,) = app.clients
        assert client.fast is not None, "armed: the next read goes straight to the C loop"
        fast = list(client.fast)
        fast[1] = [object()] * len(fast[1])  # type: ignore[arg-type]
        client.fast = tuple(fast)
        writer.write(resp.encode_request([b"GET", b"k"]))
        answer = await asyncio.wait_for(reader.read(), 5)  # up to EOF: it is closed
        assert answer == b"-ERR internal error in the sidecar\r\n"
        writer.close()
        assert any(
            "unexpected error" in r.getMessage() and r.exc_info and r.exc_info[0] is TypeError
            for r in caplog.records
        )
        other, other_writer = await asyncio.open_connection("127.0.0.1", app.listen_port)
        other_writer.write(resp.encode_request([b"GET", b"k"]))
        assert await other.readexactly(7) == b"$1\r\nv\r\n"
        other_writer.close()
    finally:
        await app.stop()


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=1, max_size=80))
def test_splitting_anywhere_changes_nothing(data: bytes) -> None:
    """Pipelined requests cut at any point: the scanner sees each cut and resumes."""
    stream = b"".join(resp.encode_request([b"SET", data[:i], data]) for i in range(3))
    for cut in range(len(stream)):
        head, _, _ = scan(stream[:cut], 0)
        tail, end, other = scan(stream, sum(len(r) for r in head))
        assert (end, other) == (len(stream), False)
        assert head + tail == [resp.encode_request([b"SET", data[:i], data]) for i in range(3)]


@pytest.mark.parametrize(
    "key",
    [
        b"",
        b"hello",
        b"user:1000",
        b"\x00\xff\x10binary",
        "café".encode(),
        b"foo{}{bar}",
        b"{}x",
        b"{user1000}.following",
        b"foo{{bar}}zap",
    ],
)
def test_the_c_hash_is_the_pinned_wire_contract(key: bytes) -> None:
    # A two-token ring where only the exact pinned hash lands on shard 1.
    h = key_hash(key)
    ring = native.Ring([0, 2**32 - 1], [1, 0]) if h == 0 else native.Ring([h - 1, h], [0, 1])
    assert ring.lookup(key) == 1


# -- write_now: a transport's write with the system call in C --------------------------------


class RecordingTransport:
    """The three transport methods write_now uses; records what it was asked to write."""

    def __init__(self, closing: bool = False, buffered: int = 0) -> None:
        self.closing = closing
        self.buffered = buffered
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    yield ours, peer
    ours.close()
    peer.close()


def received(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""


def test_write_now_sends_on_the_socket_when_nothing_is_buffered(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = socket_pair
    transport = RecordingTransport()
    native.write_now(transport, ours.fileno(), b"+OK\r\n")
    assert received(peer) == b"+OK\r\n"
    assert transport.written == []


@pytest.mark.parametrize(
    ("transport", "fd_known"),
    [
        (RecordingTransport(buffered=1), True),  # earlier bytes wait: these must not overtake
        (RecordingTransport(closing=True), True),  # the number may belong to another socket
        (RecordingTransport(), False),  # no socket known (TLS): only the transport can write
    ],
)
def test_write_now_leaves_the_bytes_to_the_transport_when_it_must(
    socket_pair: tuple[socket.socket, socket.socket], transport: RecordingTransport, fd_known: bool
) -> None:
    ours, peer = socket_pair
    native.write_now(transport, ours.fileno() if fd_known else -1, b"$1\r\nx\r\n")
    assert received(peer) == b""
    assert transport.written == [b"$1\r\nx\r\n"]


def test_write_now_gives_the_transport_what_the_socket_did_not_take(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = socket_pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = random.Random(7).randbytes(4 << 20)
    transport = RecordingTransport()
    native.write_now(transport, ours.fileno(), data)
    taken = b""
    while chunk := received(peer):
        taken += chunk
    assert 0 < len(taken) < len(data)
    assert len(transport.written) == 1
    assert taken + transport.written[0] == data  # in order, nothing lost or doubled


def test_write_now_leaves_a_failing_socket_to_the_transport(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    """A peer gone: the transport meets the error itself and fails the connection as always."""
    ours, peer = socket_pair
    peer.close()
    transport = RecordingTransport()
    native.write_now(transport, ours.fileno(), b"+OK\r\n")
    assert transport.written == [b"+OK\r\n"]


# -- ShardReader: BackendConnection.data_received in C ---------------------------------------


class FakeShardConn:
    """The attributes and methods of a BackendConnection that ShardReader uses."""

    def __init__(self) -> None:
        self.rest = b""
        self.received = 0
        self.waiters: collections.deque[Slot] = collections.deque()
        self.on_push: Callable[[bytes], None] | None = None
        self.marks: collections.deque[tuple[int, float, bytes, int]] = collections.deque()
        self.observed: list[float] = []
        self.in_python: list[bytes] = []
        self.failed: list[str] = []

    def _deliver_in_python(self, buf: bytes) -> None:
        self.in_python.append(buf)

    def fail(self, reason: str) -> None:
        self.failed.append(reason)

    def reader(self, now: float = 10.0) -> Callable[[bytes], None]:
        reader: Callable[[bytes], None] = native.ShardReader(
            self, print, self.observed.append, lambda: now, self.marks
        )
        return reader


def waiting_client(conn: FakeShardConn) -> FakeClient:
    client = FakeClient()
    slot = Slot(client)
    client.pending.append(slot)
    conn.waiters.append(slot)
    return client


def test_the_shard_reader_keeps_a_cut_reply_and_times_each_answered_write() -> None:
    conn = FakeShardConn()
    first, second, third = (waiting_client(conn) for _ in range(3))
    conn.marks.extend([(2, 9.5, b"", 2), (3, 9.75, b"", 1)])  # two writes: 2 requests, then 1
    read = conn.reader(now=10.0)
    read(b"+one\r\n$3\r\ntw")
    assert (first.written, conn.rest, conn.received, conn.observed) == (
        [b"+one\r\n"],
        b"$3\r\ntw",
        1,
        [],
    )
    read(b"o\r\n+thr")
    assert second.written == [b"$3\r\ntwo\r\n"]
    assert (conn.rest, conn.received, conn.observed, len(conn.marks)) == (b"+thr", 2, [0.5], 1)
    read(b"ee\r\n")
    assert third.written == [b"+three\r\n"]
    assert (conn.rest, conn.received, conn.observed, list(conn.marks)) == (b"", 3, [0.5, 0.25], [])


def test_the_shard_reader_hands_what_it_does_not_claim_to_python_whole() -> None:
    conn = FakeShardConn()
    client = waiting_client(conn)
    read = conn.reader()
    read(b":1\r\n$")
    assert client.written == [b":1\r\n"] and conn.rest == b"$"
    read(b"+3\r\nabc\r\n")  # a length field that is not plain decimal
    assert conn.in_python == [b"$+3\r\nabc\r\n"]  # the kept rest in front, nothing delivered
    assert conn.rest == b"" and conn.received == 1


def test_the_shard_reader_fails_the_connection_on_a_reply_nobody_asked_for() -> None:
    conn = FakeShardConn()
    client = waiting_client(conn)
    conn.reader()(b"+OK\r\n+extra\r\n")
    assert client.written == [b"+OK\r\n"]
    assert conn.failed == ["a reply arrived that nobody asked for"]


# -- ShardWriter and Flusher: the per-turn steps in C ----------------------------------------


class FakeWriterConn:
    """The attributes of a BackendConnection that ShardWriter uses."""

    def __init__(self, transport: RecordingTransport | None) -> None:
        self.out: list[bytes] = []
        self.transport = transport
        self.fd = -1  # through transport.write, recorded
        self.sent = 0
        self.marks: collections.deque[tuple[int, float, bytes, int]] = collections.deque()


def test_the_shard_writer_sends_a_turn_in_one_write_and_marks_it() -> None:
    transport = RecordingTransport()
    conn = FakeWriterConn(transport)
    flush: Callable[[], None] = native.ShardWriter(conn, lambda: 7.5, conn.marks)
    flush()  # nothing queued: nothing written, nothing marked
    conn.out += [b"*1\r\n$4\r\nPING\r\n", b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"]
    queued = conn.out
    flush()
    assert transport.written == [b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"]
    assert conn.out == [] and conn.out is not queued and conn.sent == 2
    conn.out.append(b"*1\r\n$4\r\nPING\r\n")
    flush()
    assert [m[:2] + m[3:] for m in conn.marks] == [(2, 7.5, 2), (3, 7.5, 1)]
    assert transport.written[1] == conn.marks[1][2] == b"*1\r\n$4\r\nPING\r\n"


def test_the_shard_writer_joins_pieces_that_are_not_bytes_as_bytes_join_does() -> None:
    transport = RecordingTransport()
    conn = FakeWriterConn(transport)
    conn.out += [b"*1\r\n", bytearray(b"$4\r\n"), b"PING\r\n", b""]  # type: ignore[list-item]
    native.ShardWriter(conn, lambda: 0.0, conn.marks)()
    assert transport.written == [b"*1\r\n$4\r\nPING\r\n"] and conn.sent == 4


def test_the_shard_writer_keeps_the_queue_while_there_is_no_transport() -> None:
    conn = FakeWriterConn(None)
    conn.out.append(b"*1\r\n$4\r\nPING\r\n")
    native.ShardWriter(conn, lambda: 0.0, conn.marks)()
    assert conn.out == [b"*1\r\n$4\r\nPING\r\n"] and conn.sent == 0 and not conn.marks


class WriterClient(FakeClient):
    """The attributes of a ClientConnection that ClientWriter uses, and a transport's close."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed += 1


def answered(client: FakeClient, *replies: bytes | None) -> list[Slot]:
    slots = []
    for reply in replies:
        slot = Slot(client)
        slot.reply = reply
        client.pending.append(slot)
        slots.append(slot)
    return slots


def client_flush(client: WriterClient, native_flush: bool) -> Callable[[], None]:
    if native_flush:
        writer: Callable[[], None] = native.ClientWriter(client)
        return writer
    return lambda: server.ClientConnection.flush(client)  # type: ignore[arg-type]


@pytest.mark.parametrize("native_flush", [True, False])
def test_the_client_writer_sends_the_answered_head_in_order_in_one_write(
    native_flush: bool,
) -> None:
    """ClientWriter and the reference ClientConnection.flush, on the same client."""
    client = WriterClient()
    flush = client_flush(client, native_flush)
    flush()  # nothing pending: nothing written
    _, _, waiting, _ = answered(client, b"+1\r\n", b"+2\r\n", None, b"+4\r\n")
    flush()
    assert client.written == [b"+1\r\n+2\r\n"] and client.pending[0] is waiting
    waiting.reply = b"+3\r\n"
    flush()
    assert client.written[1:] == [b"+3\r\n+4\r\n"] and not client.pending
    answered(client, b"+5\r\n")
    flush()
    assert client.written[2:] == [b"+5\r\n"]  # one reply: written as it is, no join
    assert client.closed == 0


@pytest.mark.parametrize("native_flush", [True, False])
def test_the_client_writer_closes_a_closing_client_once_nothing_is_pending(
    native_flush: bool,
) -> None:
    client = WriterClient()
    flush = client_flush(client, native_flush)
    client.closing = True
    _, waiting = answered(client, b"-ERR max number of clients reached\r\n", None)
    flush()
    assert client.written == [b"-ERR max number of clients reached\r\n"] and client.closed == 0
    waiting.reply = b"+OK\r\n"
    flush()
    assert client.written[1:] == [b"+OK\r\n"] and client.closed == 1
    client.transport = None  # type: ignore[assignment]  # the connection is gone
    answered(client, b"+late\r\n")
    flush()
    assert len(client.written) == 2 and len(client.pending) == 1 and client.closed == 1


# -- Latency: stats.Latency in C, and the marks' clock ------------------------------------


@given(st.lists(st.floats(min_value=0.0, max_value=20.0), max_size=200))
@settings(max_examples=100, deadline=None)
def test_the_c_latency_histogram_counts_like_the_reference(observations: list[float]) -> None:
    bounds = LATENCY_BUCKETS
    reference, c = Latency(), native.Latency(bounds, HEALTH_BUCKETS)
    for seconds in [*observations, *bounds[:3], HEALTH_BUCKETS[7]]:  # bounds fall in their bucket
        reference.observe(seconds)
        c.observe(seconds)
    assert (c.buckets, c.count, c.window) == (reference.buckets, reference.count, reference.window)
    assert c.total == pytest.approx(reference.total)
    assert c.take_window() == reference.take_window()
    assert c.window == reference.window == [0] * (len(HEALTH_BUCKETS) + 1)


def test_the_c_latency_histogram_refuses_bounds_out_of_order() -> None:
    with pytest.raises(ValueError, match="strictly ascending"):
        native.Latency([0.1, 0.05], HEALTH_BUCKETS)
    with pytest.raises(TypeError):
        native.Latency([0.1, "slow"], HEALTH_BUCKETS)


def test_the_shard_reader_times_into_a_c_histogram_and_the_writer_marks_monotonic_time() -> None:
    latency = native.Latency(LATENCY_BUCKETS, HEALTH_BUCKETS)
    writer_conn = FakeWriterConn(RecordingTransport())
    writer_conn.out.append(b"*1\r\n$4\r\nPING\r\n")
    before = time.monotonic()
    native.ShardWriter(writer_conn, None, writer_conn.marks)()
    after = time.monotonic()
    (mark,) = writer_conn.marks
    assert before <= mark[1] <= after  # the clock time.monotonic() reads

    conn = FakeShardConn()
    client = waiting_client(conn)
    conn.marks.append((1, time.monotonic() - 0.003, b"", 1))  # written 3 ms ago
    native.ShardReader(conn, print, latency.observe, None, conn.marks)(b"+PONG\r\n")
    assert client.written == [b"+PONG\r\n"] and not conn.marks
    assert latency.count == 1 and 0.003 <= latency.total < 1.0
    assert latency.buckets[bisect.bisect_left(LATENCY_BUCKETS, latency.total)] == 1


class Flushed:
    def __init__(
        self, name: str, log: list[str], then: Callable[[], None] = lambda: None, queued: int = 0
    ):
        self.name, self.log, self.then = name, log, then
        self.dirty = False
        self.out = [b"*1\r\n$4\r\nPING\r\n"] * queued

    def flush(self) -> None:
        self.log.append(self.name)
        self.then()


@pytest.mark.parametrize("make", [flusher_module.Flusher, native.Flusher])
async def test_the_flusher_runs_once_per_tick_backends_first(make: Callable[..., Any]) -> None:
    flusher = make(asyncio.get_running_loop())
    log: list[str] = []
    late = Flushed("late client", log)
    client = Flushed("client", log)
    backend = Flushed("backend", log, then=lambda: flusher.add_client(late))
    flusher.add_client(client)
    flusher.add_backend(backend)
    assert backend.dirty and client.dirty and flusher.scheduled
    await asyncio.sleep(0)
    assert log == ["backend", "client", "late client"]  # one run, whatever it registered too
    assert not (backend.dirty or client.dirty or late.dirty)
    await asyncio.sleep(0)  # the run the late client scheduled finds nothing left
    assert len(log) == 3 and not flusher.scheduled
    flusher.add_backend(backend)
    await asyncio.sleep(0)
    assert log[3:] == ["backend", "late client"]


@pytest.mark.parametrize("make", [flusher_module.Flusher, native.Flusher])
async def test_small_batches_to_shards_wait_one_more_poll(make: Callable[..., Any]) -> None:
    flusher = make(asyncio.get_running_loop())
    log: list[str] = []
    first, second = Flushed("shard 1", log, queued=1), Flushed("shard 2", log, queued=2)
    client = Flushed("client", log)
    flusher.add_backend(first)
    flusher.add_backend(second)
    flusher.add_client(client)
    await asyncio.sleep(0)
    # Three requests for two shards: the shards wait one poll, the client's replies do not.
    assert log == ["client"] and flusher.held and flusher.scheduled
    late = Flushed("shard 3", log, queued=1)
    flusher.add_backend(late)  # arrived in that poll: leaves with the others
    await asyncio.sleep(0)
    assert log == ["client", "shard 1", "shard 2", "shard 3"]
    assert not flusher.held and not flusher.scheduled


@pytest.mark.parametrize("make", [flusher_module.Flusher, native.Flusher])
@pytest.mark.parametrize(
    ("queued", "held"),
    [
        ([1], False),
        ([2 * HOLD_UNDER_PER_SHARD, 0], False),
        ([HOLD_UNDER_PER_SHARD + 2, HOLD_UNDER_PER_SHARD - 2], False),
        ([HOLD_UNDER_PER_SHARD, HOLD_UNDER_PER_SHARD - 1], True),
    ],
    ids=["a lone request", "a large batch", "large batches", "just under the bound"],
)
async def test_a_lone_request_or_large_batches_leave_at_once(
    make: Callable[..., Any], queued: list[int], held: bool
) -> None:
    flusher = make(asyncio.get_running_loop())
    log: list[str] = []
    for i, n in enumerate(queued):
        flusher.add_backend(Flushed(f"shard {i}", log, queued=n))
    await asyncio.sleep(0)
    assert log == ([] if held else [f"shard {i}" for i in range(len(queued))])
    assert flusher.held == held
