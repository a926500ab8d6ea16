"""PodDisruptionBudgets: a node drain takes at most a few shard pods (and gutter pods) at once."""

from __future__ import annotations

from cachefleet_operator.children.context import RenderContext
from cachefleet_operator.labels import metadata, selector
from cachefleet_operator.naming import gutter_budget, shards_budget
from cachefleet_operator.plan import Manifest

# policy/v1 exists from Kubernetes 1.21; on older servers the edge may send it as v1beta1
# (the fields used here are the same in both).
API_VERSION = "policy/v1"


def disruption_budgets(context: RenderContext) -> list[Manifest]:
    budget = context.spec.scheduling.pod_disruption_budget
    if not budget.enabled:
        return []
    result = [_budget(context, shards_budget(context.name), "shard", budget.max_unavailable)]
    if context.spec.gutter.enabled:
        result.append(_budget(context, gutter_budget(context.name), "gutter", 1))
    return result


def _budget(context: RenderContext, name: str, role: str, max_unavailable: int) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "PodDisruptionBudget",
        "metadata": metadata(context.owner, name, f"{role}-budget"),
        "spec": {
            "maxUnavailable": max_unavailable,
            "selector": {"matchLabels": selector(context.owner, role)},
        },
    }
