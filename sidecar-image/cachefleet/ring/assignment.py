"""The ring's wire form: what the operator persists and the sidecar reads.

Tokens are stored as little-endian uint32 gaps (the first is absolute) followed by uint16 owner
indexes, zlib-compressed and base64-encoded. 100 shards × 160 tokens take about 80 kB, well
inside a ConfigMap's 1 MiB, and the form is exact: decoding gives the identical ring.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import struct
import zlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cachefleet.ring.errors import RingError
from cachefleet.ring.hashing import HASH_CONTRACT
from cachefleet.ring.ring import Ring
from cachefleet.ring.shards import Shard

ENCODING = "uint32-gaps+uint16-owners/zlib/base64"


class ShardWeight(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    weight: float = 1.0


class RingAssignment(BaseModel):
    """An exact, compact ring: shards with weights, and every token with its owner."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hash: Literal["murmur3_x86_32-seed0-unsigned/redis-hash-tags"] = HASH_CONTRACT  # type: ignore[assignment]
    encoding: Literal["uint32-gaps+uint16-owners/zlib/base64"] = ENCODING  # type: ignore[assignment]
    shards: list[ShardWeight] = Field(min_length=1)
    token_count: int = Field(ge=1)
    tokens: str

    @classmethod
    def from_ring(cls, ring: Ring) -> RingAssignment:
        tokens = ring.tokens
        gaps = [tokens[0], *(b - a for a, b in itertools.pairwise(tokens))]
        count = len(tokens)
        raw = struct.pack(f"<{count}I{count}H", *gaps, *ring.owners)
        return cls(
            shards=[ShardWeight(name=s.name, weight=s.weight) for s in ring.shards],
            token_count=count,
            tokens=base64.b64encode(zlib.compress(raw, 9)).decode("ascii"),
        )

    def to_ring(self) -> Ring:
        count = self.token_count
        try:
            raw = zlib.decompress(base64.b64decode(self.tokens, validate=True))
        except (binascii.Error, zlib.error) as error:
            raise RingError(f"ring tokens are not valid {ENCODING}: {error}") from error
        if len(raw) != count * 6:
            raise RingError(
                f"ring tokens hold {len(raw)} bytes, expected {count * 6} for {count} tokens"
            )
        values = struct.unpack(f"<{count}I{count}H", raw)
        tokens: list[int] = []
        position = 0
        for gap in values[:count]:
            position += gap
            tokens.append(position)
        shards = [Shard(s.name, s.weight) for s in self.shards]
        return Ring(shards, tokens, values[count:])
