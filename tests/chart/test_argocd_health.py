"""The Argo CD health check on statuses the reconciler really writes, phase by phase."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

from tests.chart.argocd import HEALTH_CHECK, health
from tests.operator.fleet import Fleet, cache_cluster

ROOT = Path(__file__).resolve().parents[2]


def as_seen(fleet: Fleet) -> dict[str, object]:
    body = copy.deepcopy(fleet.cluster)
    body["metadata"]["generation"] = body["metadata"].get("generation", 1)
    return body


def test_a_new_cluster_is_progressing_until_the_operator_has_seen_it() -> None:
    fleet = Fleet(cache_cluster(shards=3))
    assert health(as_seen(fleet))[0] == "Progressing"


def test_stable_with_every_shard_ready_is_healthy_and_unready_shards_progressing() -> None:
    fleet = Fleet(cache_cluster(shards=3), pods_ready=False)
    fleet.reconcile()
    fleet.reconcile()
    status, message = health(as_seen(fleet))
    assert status == "Progressing" and "0/3 shards ready" in message
    fleet.set_ready(True)
    fleet.reconcile()
    assert health(as_seen(fleet)) == ("Healthy", "3/3 shards ready")


def test_a_capacity_change_is_progressing_and_a_new_generation_too() -> None:
    fleet = Fleet(cache_cluster(shards=3))
    fleet.reconcile()
    fleet.reconcile()
    fleet.edit(shards=4)
    fleet.cluster["metadata"]["generation"] = 2
    status, message = health(as_seen(fleet))
    assert status == "Progressing" and "generation 2" in message
    fleet.reconcile()
    status, message = health(as_seen(fleet))
    assert fleet.phase in ("Provisioning", "Shadowing")
    assert status == "Progressing" and "3 → 4 shards" in message


def test_a_spec_that_cannot_work_is_degraded_with_the_reason() -> None:
    fleet = Fleet(cache_cluster(shards=3))
    fleet.reconcile()
    fleet.edit(weights={"shard-0": 0})
    fleet.reconcile()
    status, message = health(as_seen(fleet))
    assert status == "Degraded" and "spec.weights.shard-0" in message


def test_the_docs_carry_the_same_health_check() -> None:
    """The argocd-cm snippet in docs/gitops.md holds the tested script, indented under its key."""
    docs = (ROOT / "docs" / "gitops.md").read_text()
    key = "  resource.customizations.health.cachefleet.io_CacheCluster: |\n"
    assert key + textwrap.indent(HEALTH_CHECK.read_text().strip(), "    ") + "\n```" in docs
