"""The C loops (``_speedups``) against the pure-Python reference, on valid and malformed input.

The request scanner is checked against what the hiredis path computes (hiredis + request_end):
every request it claims must be exactly what that path would cut, and it must never claim
anything else. The reply splitter must equal ``resp.split_replies`` wherever it answers (it
returns None to hand odd length fields to the reference). Then whole byte streams go through a
real sidecar twice, with and without the C loops, and must get the same reply bytes.
"""

from __future__ import annotations

import asyncio
import collections
import random
import subprocess
from collections.abc import Callable, Iterator

import hiredis
import pytest
from cachefleet.ring import Shard, classic_ring, key_hash
from cachefleet.sidecar import pool, resp, server
from cachefleet.sidecar.resp import ProtocolError
from cachefleet.sidecar.slots import PartSlot, Slot
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import Shard_, make_config, start_sidecar

native = pytest.importorskip("cachefleet.sidecar._speedups", reason="C extension not built")

RING = classic_ring([Shard(f"shard-{i}") for i in range(4)])
RING_LOOKUP = RING.lookup_function()
NATIVE_RING = native.Ring(RING.tokens, RING.owners)


def scan(buf: bytes | bytearray, pos: int) -> tuple[list[tuple[object, ...]], int, bool]:
    return native.scan_requests(buf, pos, NATIVE_RING)


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
    for raw, name, key, argc, shard in found:
        reference = hiredis_request(data, at)
        assert reference is not None, "claimed a request hiredis sees as incomplete"
        args, end = reference
        assert raw == data[at:end]
        assert type(raw) is bytes
        assert name == args[0]
        assert argc == len(args)
        assert key == (args[1] if len(args) > 1 else None)
        assert shard == (RING_LOOKUP(args[1]) if len(args) > 1 else -1)
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
    assert b"".join(raw for raw, *_ in found) == buf
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
    assert [f[1:4] for f in found] == [(b"GET", b"k", 2)] and (pos, other) == (len(get) + 2, False)
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
    assert scan(resp.encode_request([b"GET", key]), 0)[0][0][4] == RING_LOOKUP(key)


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
        native.scan_requests(b"", 0, None)


# -- the reply splitter --------------------------------------------------------------------------


def check_split(buf: bytes) -> None:
    try:
        reference: tuple[list[bytes], int] | Exception = resp.split_replies(buf)
    except ValueError as error:
        reference = error
    found = native.split_replies(buf)
    if found is None:
        return  # the caller runs the reference
    assert not isinstance(reference, Exception), f"reference raised {reference!r}, C answered"
    assert found == reference


@given(replies)
def test_splitter_equals_the_reference(buf: bytes) -> None:
    found = native.split_replies(buf)
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
    assert native.split_replies(b"$ 3\r\nabc\r\n") is None  # int() takes it; C does not
    assert native.split_replies(b"*1_0\r\n") is None
    assert native.split_replies(b"*99999999999999999999\r\n:1\r\n") is None
    assert native.split_replies(b"$-99\r\n:1\r\n") == ([b"$-99\r\n", b":1\r\n"], 10)
    assert native.split_replies(b"*2\r\n:1\r\n") == ([], 0)
    assert native.split_replies(b"+OK\r") == ([], 0)


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


# -- enqueue_requests and deliver_replies: the per-request steps in C ----------------------------


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

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def mark_dirty(self) -> None:
        self.dirty = True


def enqueue(
    buf: bytes | bytearray, pos: int, targets: list[tuple[FakeConn, dict[object, int]]]
) -> tuple[tuple[int, bool], FakeClient, list[FakeConn]]:
    client = FakeClient()
    added: list[FakeConn] = []

    def add_backend(conn: FakeConn) -> None:
        conn.dirty = True
        added.append(conn)

    done = native.enqueue_requests(
        buf,
        pos,
        NATIVE_RING,
        server._FAST_ARITY,
        targets,
        client,
        client.pending.append,
        Slot,
        add_backend,
        pool.READY,
        1000,
    )
    return done, client, added


def test_enqueue_takes_fast_requests_like_the_python_loop() -> None:
    targets = [(FakeConn(), {}) for _ in range(4)]
    targets[3] = (FakeConn(state=pool.CONNECTING), {})
    keys = [b"k%d" % i for i in range(40)]
    reqs = [resp.encode_request([b"GET", k]) for k in keys]
    (pos, done), client, added = enqueue(b"".join(reqs) + reqs[0][:7], 0, targets)
    assert (pos, done) == (sum(map(len, reqs)), True)
    assert len(client.pending) == len(reqs)
    assert all(type(s) is Slot and s.client is client and s.reply is None for s in client.pending)
    get = server._FAST[b"GET"]
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
def test_enqueue_stops_at_what_python_must_handle(odd: list[bytes]) -> None:
    targets = [(FakeConn(), {}) for _ in range(4)]
    get = resp.encode_request([b"GET", b"a"])
    for buf in (get + resp.encode_request(odd) + get, bytearray(get + resp.encode_request(odd))):
        (pos, done), client, _ = enqueue(buf, 0, targets)
        assert (pos, done) == (len(get), False)
        assert len(client.pending) == 1
    (pos, done), _, _ = enqueue(get + b"PING\r\n", 0, targets)
    assert (pos, done) == (len(get), False)
    (pos, done), _, _ = enqueue(get + b"*2\r\n$3\r\nGE", 0, targets)
    assert (pos, done) == (len(get), True)


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


def flush_all(shards: list[Shard_]) -> None:
    for shard in shards:
        subprocess.run(["redis-cli", "-p", str(shard.port), "FLUSHALL"], timeout=10, check=True)


@pytest.fixture
def pure_python(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    def switch() -> None:
        monkeypatch.setattr(server, "_scan", None)
        monkeypatch.setattr(server, "_enqueue", None)
        monkeypatch.setattr(pool, "native_split", None)
        monkeypatch.setattr(pool, "native_deliver", None)

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
                flush_all(shards)
                results[mode].append(await exchange(app.listen_port, stream, chunks))
        finally:
            await app.stop()
    assert results["native"] == results["pure"]
    assert all(results["native"]), "every stream gets some reply"
    assert results["native"][0].count(b"\r\n") > 8


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=1, max_size=80))
def test_splitting_anywhere_changes_nothing(data: bytes) -> None:
    """Pipelined requests cut at any point: the scanner sees each cut and resumes."""
    stream = b"".join(resp.encode_request([b"SET", data[:i], data]) for i in range(3))
    for cut in range(len(stream)):
        head, _, _ = scan(stream[:cut], 0)
        tail, end, other = scan(stream, sum(len(r[0]) for r in head))
        assert (end, other) == (len(stream), False)
        assert [r[0] for r in head + tail] == [
            resp.encode_request([b"SET", data[:i], data]) for i in range(3)
        ]


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
