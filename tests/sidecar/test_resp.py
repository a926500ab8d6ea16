import hiredis
import pytest
from cachefleet.sidecar import resp
from cachefleet.sidecar.resp import ProtocolError
from hypothesis import given
from hypothesis import strategies as st


def parse_all(buf: bytes) -> list[tuple[list[bytes], bytes]]:
    """Requests with the original bytes their computed spans cut out."""
    reader = hiredis.Reader()
    reader.feed(buf)
    out = []
    pos = 0
    while (args := reader.gets()) is not False:
        end = resp.request_end(buf, pos, args)
        out.append((args, buf[pos:end]))
        pos = end
    assert pos == len(buf)
    return out


@given(st.lists(st.lists(st.binary(max_size=300), min_size=1, max_size=12), min_size=1, max_size=8))
def test_request_spans_are_the_original_bytes(requests: list[list[bytes]]) -> None:
    encoded = [resp.encode_request(r) for r in requests]
    parsed = parse_all(b"".join(encoded))
    assert [args for args, _ in parsed] == requests
    assert [raw for _, raw in parsed] == encoded


@pytest.mark.parametrize(
    "frame",
    [
        b"*2\r\n$3\r\nGET\r\n+foo\r\n",  # simple string inside a request: Redis refuses it
        b"*2\r\n$3\r\nGET\r\n:12\r\n",
        b"*2\r\n$3\r\nGET\r\n=8\r\ntxt:abcd\r\n",
        b"*2\r\n$3\r\nGET\r\n$-1\r\n",
        b"*2\r\n$3\r\nGET\r\n*1\r\n$1\r\na\r\n",
        b"*2\r\n+GET\r\n+k\r\n",  # offsets computed for bulk strings run past the frame
    ],
)
def test_non_bulk_elements_are_a_protocol_error(frame: bytes) -> None:
    reader = hiredis.Reader()
    reader.feed(frame)
    args = reader.gets()
    with pytest.raises(ProtocolError):
        resp.request_end(frame, 0, args)


REPLIES = [
    b"+OK\r\n",
    b"-ERR no\r\n",
    b":42\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"$5\r\nhe\r\nl\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*2\r\n$1\r\na\r\n$-1\r\n",
    b"*2\r\n*1\r\n:1\r\n%1\r\n+k\r\n$1\r\nv\r\n",
    b"_\r\n",
    b",1.5\r\n",
    b"#t\r\n",
    b"(12345678901234567890\r\n",
    b"=8\r\ntxt:abcd\r\n",
    b"!3\r\nbad\r\n",
    b"~2\r\n:1\r\n:2\r\n",
    b">2\r\n+a\r\n+b\r\n",
    b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
    b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_reply_end_finds_each_reply_and_waits_for_partial_ones(reply: bytes) -> None:
    assert resp.reply_end(reply, 0) == len(reply)
    assert resp.reply_end(b"xx" + reply + b"+OK\r\n", 2) == len(reply) + 2
    for cut in range(len(reply)):
        assert resp.reply_end(reply[:cut], 0) == -1


def test_array_elements_and_integers() -> None:
    assert resp.array_elements(b"*3\r\n$1\r\na\r\n$-1\r\n_\r\n") == [
        b"$1\r\na\r\n",
        b"$-1\r\n",
        b"_\r\n",
    ]
    assert resp.array_elements(b"-ERR x\r\n") is None
    assert resp.integer_value(b":17\r\n") == 17
    assert resp.integer_value(b"-ERR\r\n") is None


def test_replies_built_per_protocol() -> None:
    assert resp.null(2) == b"$-1\r\n"
    assert resp.null(3) == b"_\r\n"
    pairs = [(resp.bulk(b"a"), resp.integer(1))]
    assert resp.mapping(pairs, 3) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert resp.mapping(pairs, 2) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert resp.verbatim(b"hi", 3) == b"=6\r\ntxt:hi\r\n"
    assert resp.verbatim(b"hi", 2) == b"$2\r\nhi\r\n"
    assert resp.error("ERR bad\r\nthing") == b"-ERR bad  thing\r\n"


def test_declared_sizes_are_checked_before_the_bytes_arrive() -> None:
    resp.check_declared_sizes(b"*2\r\n$3\r\nSET\r\n$100\r\nab", 1024)
    with pytest.raises(ProtocolError, match="bulk length"):
        resp.check_declared_sizes(b"*2\r\n$3\r\nSET\r\n$99999\r\nab", 1024)
    with pytest.raises(ProtocolError, match="multibulk length"):
        resp.check_declared_sizes(b"*99999999\r\n", 1024)
    with pytest.raises(ProtocolError, match="multibulk length"):
        resp.check_declared_sizes(b"*x\r\n", 1024)


def test_inline_commands_split_like_redis() -> None:
    assert resp.split_inline(b"SET a  b") == [b"SET", b"a", b"b"]
    assert resp.split_inline(b"SET 'a b' \"c d\"") == [b"SET", b"a b", b"c d"]
    with pytest.raises(ProtocolError):
        resp.split_inline(b"SET 'a")
