"""The CacheCluster resource as pydantic models: the CRD is generated from these."""

from cachefleet_operator.api.base import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from cachefleet_operator.api.parse import SpecError, parse_spec
from cachefleet_operator.api.spec import CacheClusterSpec
from cachefleet_operator.api.status import (
    CacheClusterStatus,
    Condition,
    RingStatus,
    ShardStatus,
    WarmUpStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "CacheClusterSpec",
    "CacheClusterStatus",
    "Condition",
    "RingStatus",
    "ShardStatus",
    "SpecError",
    "WarmUpStatus",
    "parse_spec",
]
