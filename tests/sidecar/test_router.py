"""Split requests reassembled in the client's order, without a network."""

from cachefleet.sidecar.commands import Split
from cachefleet.sidecar.router import SplitRequest
from cachefleet.sidecar.slots import PartSlot, Slot


class Sink:
    def __init__(self) -> None:
        self.dirty = False
        self.marked = 0

    def mark_dirty(self) -> None:
        self.marked += 1


def run_split(kind: Split, positions: list[list[int]], replies: list[bytes], total: int) -> bytes:
    sink = Sink()
    slot = Slot(sink)
    request = SplitRequest(slot, kind, len(positions), total)
    request.positions = positions
    parts = [PartSlot(request, i) for i in range(len(positions))]
    # Shards answer in reverse order: the result must not depend on it.
    for part, reply in reversed(list(zip(parts, replies, strict=True))):
        assert slot.reply is None
        part.fill(reply)
    assert sink.marked == 1
    assert slot.reply is not None
    return slot.reply


def test_mget_values_return_in_key_order() -> None:
    reply = run_split(
        Split.VALUES,
        [[0, 2], [1, 3]],
        [b"*2\r\n$1\r\na\r\n$-1\r\n", b"*2\r\n$1\r\nb\r\n$2\r\ndd\r\n"],
        4,
    )
    assert reply == b"*4\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n$2\r\ndd\r\n"


def test_mget_keeps_resp3_nulls() -> None:
    reply = run_split(Split.VALUES, [[1], [0]], [b"*1\r\n_\r\n", b"*1\r\n$1\r\nx\r\n"], 2)
    assert reply == b"*2\r\n$1\r\nx\r\n_\r\n"


def test_integer_replies_are_summed() -> None:
    assert run_split(Split.SUM, [[0], [1, 2]], [b":1\r\n", b":2\r\n"], 3) == b":3\r\n"


def test_any_part_error_is_the_reply() -> None:
    error = b"-ERR shard x unavailable: connection refused\r\n"
    assert run_split(Split.SUM, [[0], [1]], [b":1\r\n", error], 2) == error
    assert run_split(Split.OK, [[0], [1]], [error, b"+OK\r\n"], 2) == error
    assert run_split(Split.OK, [[0], [1]], [b"+OK\r\n", b"+OK\r\n"], 2) == b"+OK\r\n"
