"""The consistent-hash ring shared by the sidecar, the smart client and the operator."""

from cachefleet.ring.assignment import RingAssignment
from cachefleet.ring.classic import DEFAULT_TOKENS_PER_WEIGHT, classic_ring
from cachefleet.ring.errors import RingError
from cachefleet.ring.hashing import CIRCLE_SIZE, HASH_CONTRACT, hash_tag, key_hash
from cachefleet.ring.movement import Movement, ideal_moved_fraction, modulo_moved_fraction, movement
from cachefleet.ring.planned import plan_change, planned_ring
from cachefleet.ring.ring import Ring
from cachefleet.ring.shards import Shard, fair_shares

__all__ = [
    "CIRCLE_SIZE",
    "DEFAULT_TOKENS_PER_WEIGHT",
    "HASH_CONTRACT",
    "Movement",
    "Ring",
    "RingAssignment",
    "RingError",
    "Shard",
    "classic_ring",
    "fair_shares",
    "hash_tag",
    "ideal_moved_fraction",
    "key_hash",
    "modulo_moved_fraction",
    "movement",
    "plan_change",
    "planned_ring",
]
