"""The key hash: part of the wire contract between every component that routes keys.

Contract (version 1), pinned by fixed vectors in tests/ring/test_hashing.py:

* A key is the exact bytes a client sent (no decoding, no normalisation).
* Redis Cluster's hash-tag rule applies: if the key contains ``{`` and a later ``}`` with at
  least one byte between the first ``{`` and the first ``}`` after it, only those bytes hash.
* The hash is MurmurHash3 x86 32-bit, seed 0, read as an unsigned integer in [0, 2**32).
* A classic token is the same hash of the UTF-8 bytes of ``"<shard name>#<token index>"``.

Changing any of this moves keys between shards in a running fleet, so it never changes within
``HASH_CONTRACT``'s version.
"""

from __future__ import annotations

import mmh3

HASH_CONTRACT = "murmur3_x86_32-seed0-unsigned/redis-hash-tags"
CIRCLE_SIZE = 1 << 32
SEED = 0


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that is hashed, by the Redis Cluster rule."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_hash(key: bytes) -> int:
    """The position of ``key`` on the circle."""
    return mmh3.hash(hash_tag(key), SEED, False)


def token_position(shard_name: str, index: int) -> int:
    """Where a classic ring puts token number ``index`` of ``shard_name``."""
    return mmh3.hash(f"{shard_name}#{index}".encode(), SEED, False)
