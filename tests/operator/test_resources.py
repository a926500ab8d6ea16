"""Container resources: defaults under the user's requests, Redis memory sizes in bytes."""

from __future__ import annotations

import pytest
from cachefleet_operator.api.spec import Resources
from cachefleet_operator.children.resources import (
    container_resources,
    redis_memory_bytes,
    redis_memory_request,
)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("100", 100),
        ("7b", 7),
        ("512k", 512_000),
        ("512KB", 512 * 1024),
        ("3m", 3_000_000),
        ("256mb", 256 * 1024**2),
        ("2G", 2_000_000_000),
        ("1gb", 1024**3),
    ],
)
def test_redis_memory_units_follow_redis_conf(size: str, expected: int) -> None:
    assert redis_memory_bytes(size) == expected


@pytest.mark.parametrize("size", ["", "mb", "1.5gb", "1tb", "-1mb"])
def test_a_size_redis_would_refuse_is_an_error(size: str) -> None:
    with pytest.raises(ValueError, match=r"not a redis\.conf memory size"):
        redis_memory_bytes(size)


def test_the_memory_request_is_a_quarter_over_maxmemory_and_never_below_32mi() -> None:
    assert redis_memory_request("1gb") == "1280Mi"
    assert redis_memory_request("1mb") == "32Mi"


def test_given_requests_override_defaults_and_limits_are_only_the_users() -> None:
    defaults = {"cpu": "50m", "memory": "64Mi"}
    assert container_resources(defaults, None) == {"requests": defaults}
    given = Resources(requests={"memory": "1Gi"}, limits={"memory": "2Gi"})
    assert container_resources(defaults, given) == {
        "requests": {"cpu": "50m", "memory": "1Gi"},
        "limits": {"memory": "2Gi"},
    }
