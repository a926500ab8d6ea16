"""Raw spec → model, or one error that lists every problem, each with its field path."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from cachefleet_operator.api.spec import CacheClusterSpec

SHARD_NAME = re.compile(r"^shard-(0|[1-9][0-9]{0,5})$")
# redis.conf directives the operator writes itself: a user value would fight it.
MANAGED_DIRECTIVES = frozenset(
    {
        "port",
        "bind",
        "requirepass",
        "masterauth",
        "masteruser",
        "replicaof",
        "slaveof",
        "maxmemory",
        "maxmemory-policy",
        "dir",
        "save",
        "appendonly",
        "include",
        "daemonize",
        "protected-mode",
    }
)
DIRECTIVE = re.compile(r"^[a-z][a-z0-9-]*$")


class SpecError(ValueError):
    """A spec the reconciler cannot use; ``problems`` names each one with its path."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def parse_spec(raw: Mapping[str, Any] | None) -> CacheClusterSpec:
    """Validate a CacheCluster's ``spec``; raise SpecError listing every problem found."""
    if raw is None:
        raise SpecError(["spec: missing"])
    try:
        spec = CacheClusterSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError([_describe(e) for e in error.errors()]) from None
    problems = semantic_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec


def semantic_problems(spec: CacheClusterSpec) -> list[str]:
    """What the schema lets through but still cannot work."""
    problems: list[str] = []
    for name, weight in sorted(spec.weights.items()):
        if not SHARD_NAME.match(name):
            problems.append(
                f"spec.weights.{name}: not a shard name (shards are named shard-0, shard-1, ...)"
            )
        if not math.isfinite(weight) or weight <= 0:
            problems.append(f"spec.weights.{name}: weight {weight:g} must be greater than zero")
        elif weight > 1_000_000:
            problems.append(f"spec.weights.{name}: weight {weight:g} is above 1000000")
    steps = spec.warm_up.steps
    if any(b <= a for a, b in itertools.pairwise(steps)):
        problems.append(f"spec.warmUp.steps: {steps} must strictly increase")
    for directive, value in sorted(spec.redis.extra_config.items()):
        where = f"spec.redis.extraConfig.{directive}"
        if not DIRECTIVE.match(directive):
            problems.append(f"{where}: not a redis.conf directive name")
        elif directive.lower() in MANAGED_DIRECTIVES:
            problems.append(f"{where}: managed by the operator, set it through the spec")
        if "\n" in value or "\r" in value:
            problems.append(f"{where}: the value must be one line")
    auth = spec.auth
    if not auth.enabled and auth.existing_secret is not None:
        problems.append("spec.auth.existingSecret: set, but spec.auth.enabled is false")
    return problems


def _describe(error: Mapping[str, Any]) -> str:
    path = ".".join(str(part) for part in ("spec", *error["loc"]))
    return f"{path}: {error['msg']}"
