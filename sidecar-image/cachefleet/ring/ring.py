"""The ring: an explicit, immutable list of (token, shard) that every router agrees on.

A key belongs to the first token at or after its hash, clockwise, wrapping past 2**32 - 1 to
the first token. So token ``t[i]`` owns the arc ``(t[i-1], t[i]]``. How the tokens were chosen
(classic or planned) does not matter to routing: the sidecar, the smart client and the operator
only ever exchange the tokens themselves.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence

import mmh3

from cachefleet.ring.errors import RingError
from cachefleet.ring.hashing import CIRCLE_SIZE, SEED, hash_tag, key_hash
from cachefleet.ring.shards import Shard, fair_shares, validate_shards

MAX_TOTAL_TOKENS = 2_000_000


class Ring:
    """Tokens sorted by position, each owned by one shard (an index into ``shards``)."""

    __slots__ = ("_owner_of_position", "owners", "shards", "tokens")

    def __init__(self, shards: Sequence[Shard], tokens: Sequence[int], owners: Sequence[int]):
        self.shards: tuple[Shard, ...] = validate_shards(shards)
        self.tokens: tuple[int, ...] = tuple(tokens)
        self.owners: tuple[int, ...] = tuple(owners)
        if len(self.tokens) != len(self.owners):
            raise RingError("tokens and owners differ in length")
        if not self.tokens:
            raise RingError("a ring needs at least one token")
        if len(self.tokens) > MAX_TOTAL_TOKENS:
            raise RingError(
                f"{len(self.tokens)} tokens is more than the supported {MAX_TOTAL_TOKENS}"
            )
        previous = -1
        for token in self.tokens:
            if not 0 <= token < CIRCLE_SIZE:
                raise RingError(f"token {token} is outside [0, 2**32)")
            if token <= previous:
                raise RingError(f"tokens must be strictly increasing (token {token})")
            previous = token
        count = len(self.shards)
        owned = [False] * count
        for owner in self.owners:
            if not 0 <= owner < count:
                raise RingError(f"owner index {owner} does not name a shard")
            owned[owner] = True
        for shard, has_tokens in zip(self.shards, owned, strict=True):
            if not has_tokens:
                raise RingError(f"shard {shard.name!r} owns no token")
        # The wrap-around entry lets a lookup past the last token land on the first token.
        self._owner_of_position: list[int] = [*self.owners, self.owners[0]]

    @classmethod
    def from_assignment(
        cls, shards: Sequence[Shard], assignment: Iterable[tuple[int, str]]
    ) -> Ring:
        """Build from (token, shard name) pairs in any order.

        Two shards drawing the same position is resolved by name order, the lower name keeps it,
        so every process resolves it the same way.
        """
        shards = validate_shards(shards)
        index = {shard.name: i for i, shard in enumerate(shards)}
        pairs: list[tuple[int, str]] = []
        for token, name in assignment:
            if name not in index:
                raise RingError(f"token {token} names unknown shard {name!r}")
            pairs.append((token, name))
        pairs.sort()
        tokens: list[int] = []
        owners: list[int] = []
        for token, name in pairs:
            if tokens and tokens[-1] == token:
                continue
            tokens.append(token)
            owners.append(index[name])
        return cls(shards, tokens, owners)

    # -- routing ---------------------------------------------------------------------------

    @property
    def shard_names(self) -> tuple[str, ...]:
        return tuple(shard.name for shard in self.shards)

    def lookup_function(self, renumber: Sequence[int] | None = None) -> Callable[[bytes], int]:
        """A closure from key bytes to shard index, as fast as Python allows; with
        ``renumber``, shard index i is reported as ``renumber[i]`` (another ring's numbering).

        Everything it needs is bound to locals, because attribute and global look-ups cost as
        much as the hash itself.
        """
        tokens = list(self.tokens)
        owners = self._owner_of_position
        if renumber is not None:
            owners = [renumber[owner] for owner in owners]
        murmur = mmh3.hash
        search = bisect.bisect_left
        tag = hash_tag
        seed = SEED

        def shard_index(key: bytes) -> int:
            if b"{" in key:
                key = tag(key)
            return owners[search(tokens, murmur(key, seed, False))]

        return shard_index

    def shard_index(self, key: bytes) -> int:
        return self._owner_of_position[bisect.bisect_left(self.tokens, key_hash(key))]

    def shard_for(self, key: bytes) -> str:
        return self.shards[self.shard_index(key)].name

    def shard_indices(self, keys: Iterable[bytes]) -> list[int]:
        """Batch form, for analysis over many keys."""
        lookup = self.lookup_function()
        return [lookup(key) for key in keys]

    # -- ownership -------------------------------------------------------------------------

    def arcs(self) -> Iterator[tuple[int, int, int]]:
        """(start exclusive, end inclusive, owner) per token; the first arc starts below 0."""
        tokens = self.tokens
        previous = tokens[-1] - CIRCLE_SIZE
        for token, owner in zip(tokens, self.owners, strict=True):
            yield previous, token, owner
            previous = token

    def owned_units(self) -> dict[str, int]:
        """How many of the 2**32 hash values each shard owns."""
        units = [0] * len(self.shards)
        for start, end, owner in self.arcs():
            units[owner] += end - start
        return {shard.name: units[i] for i, shard in enumerate(self.shards)}

    def shares(self) -> dict[str, float]:
        return {name: units / CIRCLE_SIZE for name, units in self.owned_units().items()}

    def spread(self) -> float:
        """Standard deviation of (share ÷ weighted fair share) across shards: 0 is perfect."""
        fair = fair_shares(self.shards)
        ratios = [share / fair[name] for name, share in self.shares().items()]
        return statistics.pstdev(ratios) if len(ratios) > 1 else 0.0

    def max_deviation(self) -> float:
        """The largest |share ÷ fair share − 1| of any shard."""
        fair = fair_shares(self.shards)
        return max(abs(share / fair[name] - 1) for name, share in self.shares().items())

    def assignment(self) -> list[tuple[int, str]]:
        names = self.shard_names
        return [
            (token, names[owner]) for token, owner in zip(self.tokens, self.owners, strict=True)
        ]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return (self.shards, self.tokens, self.owners) == (other.shards, other.tokens, other.owners)

    def __hash__(self) -> int:
        return hash((self.shards, self.tokens, self.owners))

    def __repr__(self) -> str:
        return f"Ring({len(self.shards)} shards, {len(self.tokens)} tokens)"
