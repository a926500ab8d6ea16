import pytest
from cachefleet.sidecar.commands import COMMANDS, REFUSED, Access, Kind, Split, keys_of, lookup


def test_every_command_has_a_kind_and_refused_ones_say_why() -> None:
    for spec in COMMANDS.values():
        assert spec.arity != 0
        if spec.kind == Kind.REFUSED:
            assert len(spec.reason) > 20
        if spec.kind == Kind.SAME_SHARD:
            assert spec.keys_of is not None
        if spec.kind == Kind.SPLIT:
            assert spec.split is not None
    assert ("keys", COMMANDS[b"keys"].reason) in REFUSED


def test_names_are_found_in_any_case() -> None:
    assert lookup(b"get") is lookup(b"GET") is lookup(b"GeT") is COMMANDS[b"get"]
    assert lookup(b"nosuch") is None


def test_arity_follows_redis() -> None:
    get = COMMANDS[b"get"]
    assert get.arity_ok(2) and not get.arity_ok(1) and not get.arity_ok(3)
    set_ = COMMANDS[b"set"]
    assert set_.arity_ok(3) and set_.arity_ok(6) and not set_.arity_ok(2)


def test_split_commands() -> None:
    assert COMMANDS[b"mget"].split == Split.VALUES
    assert COMMANDS[b"mset"].split == Split.OK and COMMANDS[b"mset"].step == 2
    for name in (b"del", b"unlink", b"exists", b"touch"):
        assert COMMANDS[name].split == Split.SUM


def test_key_extraction_for_commands_that_need_keys_together() -> None:
    eval_keys = COMMANDS[b"eval"].keys_of
    assert eval_keys is not None
    assert eval_keys([b"EVAL", b"return 1", b"2", b"a", b"b", b"arg"]) == [b"a", b"b"]
    assert eval_keys([b"EVAL", b"return 1", b"0"]) == []
    assert eval_keys([b"EVAL", b"return 1", b"5", b"a"]) is None
    zstore = COMMANDS[b"zunionstore"].keys_of
    assert zstore is not None
    assert zstore([b"ZUNIONSTORE", b"d", b"2", b"a", b"b", b"WEIGHTS", b"1", b"2"]) == [
        b"d", b"a", b"b"
    ]  # fmt: skip
    msetnx = COMMANDS[b"msetnx"].keys_of
    assert msetnx is not None
    assert msetnx([b"MSETNX", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    rename = COMMANDS[b"rename"].keys_of
    assert rename is not None
    assert rename([b"RENAME", b"a", b"b"]) == [b"a", b"b"]


@pytest.mark.parametrize(
    ("name", "access"),
    [
        (b"GET", Access.READ),
        (b"MGET", Access.READ),
        (b"HGETALL", Access.READ),
        (b"SET", Access.OVERWRITE),
        (b"MSET", Access.OVERWRITE),
        (b"INCR", Access.READ_MODIFY_WRITE),
        (b"HSET", Access.READ_MODIFY_WRITE),
        (b"EXPIRE", Access.READ_MODIFY_WRITE),
        (b"MSETNX", Access.READ_MODIFY_WRITE),
        (b"DEL", Access.DELETE),
        (b"GETDEL", Access.DELETE),
        (b"EVAL", Access.OTHER),
        (b"PING", Access.OTHER),
    ],
)
def test_every_command_says_what_it_does_to_its_keys(name: bytes, access: Access) -> None:
    spec = lookup(name)
    assert spec is not None and spec.access == access
    assert spec.writes == (access not in (Access.READ,) and spec.kind not in (Kind.LOCAL,))


def test_every_key_command_has_a_class_and_reads_are_only_reads() -> None:
    for spec in set(COMMANDS.values()):
        if spec.kind in (Kind.SINGLE, Kind.SPLIT, Kind.SAME_SHARD):
            assert spec.access != Access.OTHER or spec.name in ("eval", "evalsha", "fcall")
    reads = {s.name for s in COMMANDS.values() if s.access == Access.READ}
    assert not reads & {"set", "incr", "del", "expire", "lpush", "zadd", "hset", "append"}


def test_keys_of_each_kind() -> None:
    def keys(*args: bytes) -> list[bytes]:
        spec = lookup(args[0])
        assert spec is not None
        return keys_of(spec, list(args))

    assert keys(b"GET", b"k") == [b"k"]
    assert keys(b"OBJECT", b"ENCODING", b"k") == [b"k"]
    assert keys(b"MSET", b"a", b"1", b"b", b"2") == [b"a", b"b"]
    assert keys(b"DEL", b"a", b"b") == [b"a", b"b"]
    assert keys(b"RENAME", b"a", b"b") == [b"a", b"b"]
    assert keys(b"EVAL", b"return 1", b"1", b"k", b"arg") == [b"k"]
    assert keys(b"PING") == []
