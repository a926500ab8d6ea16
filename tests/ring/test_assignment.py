import pytest
from cachefleet.ring import Ring, RingAssignment, RingError, Shard, plan_change, planned_ring
from pydantic import ValidationError


def test_round_trip_is_exact() -> None:
    ring = plan_change(planned_ring([Shard(f"s{i}") for i in range(7)]), [Shard("s0", 3)])
    wire = RingAssignment.from_ring(ring).model_dump_json()
    assert RingAssignment.model_validate_json(wire).to_ring() == ring


def test_a_hundred_shards_fit_well_inside_a_configmap() -> None:
    ring = planned_ring([Shard(f"cache-shard-{i}") for i in range(100)])
    size = len(RingAssignment.from_ring(ring).model_dump_json())
    assert size < 256 * 1024, size


def test_the_encoding_is_pinned() -> None:
    # Two tokens, gaps 7 and 2**32 - 8, owners 1 and 0: this string is the format, forever.
    wire = {
        "shards": [{"name": "a", "weight": 1.0}, {"name": "b", "weight": 1.0}],
        "token_count": 2,
        "tokens": "eNpjZ2Bg+PH//39GIA0AGhID/g==",
    }
    ring = RingAssignment.model_validate(wire).to_ring()
    assert ring.tokens == (7, 2**32 - 1)
    assert ring.shard_names == ("a", "b")
    assert ring.owners == (1, 0)
    assert (
        RingAssignment.from_ring(Ring(ring.shards, ring.tokens, ring.owners)).tokens
        == wire["tokens"]
    )


def test_corrupt_tokens_are_reported() -> None:
    with pytest.raises(RingError, match="not valid"):
        RingAssignment(shards=[{"name": "a"}], token_count=1, tokens="not base64!").to_ring()
    good = RingAssignment.from_ring(planned_ring([Shard("a"), Shard("b")]))
    with pytest.raises(RingError, match="expected"):
        good.model_copy(update={"token_count": good.token_count + 1}).to_ring()


def test_unknown_hash_contract_is_rejected() -> None:
    with pytest.raises(ValidationError):
        RingAssignment(hash="md5-ketama", shards=[{"name": "a"}], token_count=1, tokens="")
