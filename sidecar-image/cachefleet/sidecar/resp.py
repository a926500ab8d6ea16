"""The RESP codec: request spans, reply spans and the replies the sidecar builds itself.

Requests and replies are forwarded as their original bytes, so this module mostly answers
"where does this frame end?" rather than decoding. Building replies is for the few the sidecar
writes on its own (errors, local commands, reassembled multi-key replies).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import hiredis

# Request and reply bytes: ``bytearray`` when cut from a connection's partial buffer.
Bytes = bytes | bytearray

CRLF = b"\r\n"
OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
QUEUED_ERROR_PREFIX = b"-"

# Reply type bytes (RESP2 and RESP3).
_BULK_TYPES = frozenset(b"$=!")  # length-prefixed payload
_AGGREGATE_TYPES = frozenset(b"*~>")  # n elements follow
_PAIR_TYPES = frozenset(b"%")  # n key/value pairs follow
_ATTRIBUTE = ord("|")  # n pairs, then the reply they describe
_LINE_TYPES = frozenset(b"+-:_,#(")  # end at their first CRLF

MAX_MULTIBULK_LENGTH = 1024 * 1024  # Redis refuses more arguments than this


class ProtocolError(Exception):
    """A client sent bytes Redis itself would reject; the connection cannot be resynchronised."""


def digits(n: int) -> int:
    """Decimal digits of a non-negative int, without building the string for small values."""
    if n < 10:
        return 1
    if n < 100:
        return 2
    if n < 1000:
        return 3
    return len(str(n))


# A bulk string of n bytes takes n + len("$<n>\r\n") + 2 bytes; precomputed for common sizes.
_BULK_SIZE = [n + 5 + len(str(n)) for n in range(4096)]
_BULK_SIZES = len(_BULK_SIZE)


def request_end(buf: Bytes, start: int, args: Sequence[object]) -> int:
    """End offset of the multibulk request at ``start`` that hiredis parsed into ``args``.

    hiredis also accepts RESP3 element types and simple strings inside a request; Redis does
    not, and their encodings have different lengths. So each element is checked to be a bulk
    string (``$`` at its computed offset) and the offsets are summed from the lengths; hiredis
    already checked the length digits strictly. Raises ProtocolError for anything else.
    """
    argc = len(args)
    pos = start + (4 if argc < 10 else 3 + digits(argc))
    sizes = _BULK_SIZE
    try:
        for arg in args:
            if buf[pos] != 36 or type(arg) is not bytes:  # 36 is '$'
                raise ProtocolError("Protocol error: expected '$'")
            n = len(arg)
            pos += sizes[n] if n < _BULK_SIZES else n + 5 + digits(n)
    except (IndexError, TypeError):  # offsets ran past the frame: it was not all bulk strings
        raise ProtocolError("Protocol error: expected '$'") from None
    return pos


def check_declared_sizes(buf: bytes | bytearray, limit: int) -> None:
    """Refuse an incomplete request early when its headers declare more than allowed.

    Memory is already capped by the caller (buffered bytes <= limit); this only answers at once
    what Redis answers at once, instead of waiting for bytes that must not come. It looks at the
    first few headers only, so a huge request arriving in many chunks is not rescanned.
    """
    if not buf or buf[0] != 42:  # '*'
        return
    eol = buf.find(CRLF)
    if eol < 0:
        if len(buf) > 32:
            raise ProtocolError("Protocol error: invalid multibulk length")
        return
    try:
        count = int(buf[1:eol])
    except ValueError:
        raise ProtocolError("Protocol error: invalid multibulk length") from None
    if count > MAX_MULTIBULK_LENGTH:
        raise ProtocolError("Protocol error: invalid multibulk length")
    pos = eol + 2
    size = len(buf)
    for _ in range(min(count, 16)):
        if pos >= size or buf[pos] != 36:  # '$'; hiredis reports anything else
            return
        eol = buf.find(CRLF, pos)
        if eol < 0:
            if size - pos > 32:
                raise ProtocolError("Protocol error: invalid bulk length")
            return
        try:
            length = int(buf[pos + 1 : eol])
        except ValueError:
            raise ProtocolError("Protocol error: invalid bulk length") from None
        if length > limit:
            raise ProtocolError("Protocol error: invalid bulk length")
        pos = eol + length + 4


def encode_request(args: Iterable[bytes]) -> bytes:
    """Multibulk encoding of a command (only for inline requests and the sidecar's own)."""
    parts = list(args)
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def reply_end(buf: bytes, pos: int) -> int:
    """End offset of the complete reply starting at ``pos``, or -1 if more bytes are needed.

    Walks headers only (never payloads), iteratively, so deep or long aggregates cost no stack.
    """
    size = len(buf)
    remaining = 1
    find = buf.find
    while remaining:
        if pos >= size:
            return -1
        kind = buf[pos]
        eol = find(CRLF, pos)
        if eol < 0:
            return -1
        remaining -= 1
        if kind in _BULK_TYPES:
            n = int(buf[pos + 1 : eol])
            pos = eol + 2 if n < 0 else eol + n + 4
            if pos > size:
                return -1
        elif kind in _AGGREGATE_TYPES:
            n = int(buf[pos + 1 : eol])
            if n > 0:
                remaining += n
            pos = eol + 2
        elif kind in _PAIR_TYPES:
            remaining += 2 * int(buf[pos + 1 : eol])
            pos = eol + 2
        elif kind == _ATTRIBUTE:
            remaining += 2 * int(buf[pos + 1 : eol]) + 1
            pos = eol + 2
        else:
            pos = eol + 2
    return pos


def split_replies(buf: bytes) -> tuple[list[bytes], int]:
    """The complete replies at the start of ``buf`` and where the rest starts.

    The reference for ``_speedups.split_replies``; the common reply types are cut inline, the
    rest by ``reply_end``. A length field that is not a number raises ValueError.
    """
    size = len(buf)
    pos = 0
    find = buf.find
    replies: list[bytes] = []
    while pos < size:
        kind = buf[pos]
        if kind == 36:  # '$'
            eol = find(CRLF, pos)
            if eol < 0:
                break
            n = int(buf[pos + 1 : eol])
            end = eol + 2 if n < 0 else eol + n + 4
            if end > size:
                break
        elif kind in _LINE_TYPES:
            end = find(CRLF, pos) + 2
            if end < 2:
                break
        else:
            end = reply_end(buf, pos)
            if end < 0:
                break
        replies.append(buf if end == size and pos == 0 else buf[pos:end])
        pos = end
    return replies, pos


def array_elements(reply: bytes) -> list[bytes] | None:
    """The raw elements of an array reply, or None when the reply is not an array."""
    if not reply or reply[0] != 42:  # '*'
        return None
    eol = reply.find(CRLF)
    count = int(reply[1:eol])
    pos = eol + 2
    elements: list[bytes] = []
    for _ in range(max(count, 0)):
        end = reply_end(reply, pos)
        elements.append(reply[pos:end])
        pos = end
    return elements


def integer_value(reply: bytes) -> int | None:
    """The value of an integer reply, or None when it is something else (an error)."""
    if reply[:1] != b":":
        return None
    return int(reply[1:-2])


def is_error(reply: bytes) -> bool:
    return reply[:1] == b"-" or reply[:1] == b"!"


# -- replies the sidecar builds --------------------------------------------------------------


def error(message: str) -> bytes:
    """An error reply; ``message`` starts with its code (ERR, NOPROTO, ...)."""
    text = message.replace("\r", " ").replace("\n", " ")
    return b"-" + text.encode("utf-8", "replace") + CRLF


def simple(text: bytes) -> bytes:
    return b"+" + text + CRLF


def integer(value: int) -> bytes:
    return b":%d\r\n" % value


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def null(protocol: int) -> bytes:
    return b"_\r\n" if protocol == 3 else b"$-1\r\n"


def array(elements: Sequence[bytes]) -> bytes:
    """An array of already-encoded elements."""
    return b"*%d\r\n" % len(elements) + b"".join(elements)


def mapping(pairs: Sequence[tuple[bytes, bytes]], protocol: int) -> bytes:
    """A map of already-encoded keys and values: RESP3 map, or RESP2 flat array."""
    flat = b"".join(k + v for k, v in pairs)
    if protocol == 3:
        return b"%%%d\r\n" % len(pairs) + flat
    return b"*%d\r\n" % (2 * len(pairs)) + flat


def verbatim(text: bytes, protocol: int) -> bytes:
    """A text reply as INFO sends it: verbatim string in RESP3, bulk string in RESP2."""
    if protocol == 3:
        return b"=%d\r\ntxt:%s\r\n" % (len(text) + 4, text)
    return bulk(text)


def quote_args(args: Sequence[bytes], limit: int = 128) -> str:
    """Arguments as Redis quotes them in 'unknown command' errors."""
    return "".join(f"'{a[:limit].decode('utf-8', 'replace')}' " for a in args)


def split_inline(line: bytes) -> list[bytes]:
    """An inline command (telnet style) split on whitespace; quotes are honoured simply."""
    if b'"' not in line and b"'" not in line:
        return line.split()
    args: list[bytes] = []
    current = bytearray()
    quote = 0
    in_arg = False
    for byte in line:
        if quote:
            if byte == quote:
                quote = 0
            else:
                current.append(byte)
        elif byte in b"\"'":
            quote = byte
            in_arg = True
        elif byte in b" \t":
            if in_arg:
                args.append(bytes(current))
                current.clear()
                in_arg = False
        else:
            current.append(byte)
            in_arg = True
    if quote:
        raise ProtocolError("Protocol error: unbalanced quotes in request")
    if in_arg:
        args.append(bytes(current))
    return args


def split_requests(data: Bytes) -> list[tuple[bytes, list[bytes]]]:
    """The multibulk requests in ``data`` (bytes the sidecar sent to a shard), each as its raw
    bytes and its arguments. Off the hot path: for the requests in flight on a failed
    connection. Stops at anything that is not a complete multibulk request."""
    reader = hiredis.Reader()
    reader.feed(bytes(data))
    requests: list[tuple[bytes, list[bytes]]] = []
    pos = 0
    while True:
        try:
            args = reader.gets()
        except hiredis.ProtocolError:
            return requests
        if type(args) is not list or not args:
            return requests
        try:
            end = request_end(data, pos, args)
        except ProtocolError:
            return requests
        requests.append((bytes(data[pos:end]), args))
        pos = end


def bulk_value(reply: bytes) -> bytes | None:
    """The payload of a bulk string reply, or None when the reply is something else."""
    if reply[:1] != b"$":
        return None
    eol = reply.find(CRLF)
    try:
        size = int(reply[1:eol])
    except ValueError:
        return None
    if size < 0 or len(reply) != eol + 2 + size + 2:
        return None
    return reply[eol + 2 : eol + 2 + size]
