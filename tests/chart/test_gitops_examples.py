"""examples/gitops: the Flux and Argo CD manifests point at what exists and read real fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "examples" / "gitops"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def example_clusters() -> set[str]:
    names = set()
    for path in (ROOT / "examples").glob("*.yaml"):
        names |= {d["metadata"]["name"] for d in documents(path) if d["kind"] == "CacheCluster"}
    return names


def test_flux_waits_for_clusters_that_exist_with_conditions_the_operator_writes() -> None:
    found = documents(GITOPS / "flux" / "cachefleet.yaml")
    kustomizations = {d["metadata"]["name"]: d for d in found if d["kind"] == "Kustomization"}
    fleets = kustomizations["cache-fleets"]["spec"]
    assert fleets["dependsOn"] == [{"name": "cachefleet-operator"}]
    assert (ROOT / fleets["path"]).is_dir()
    assert {c["name"] for c in fleets["healthChecks"]} <= example_clusters()
    [expression] = fleets["healthCheckExprs"]
    for condition in ("Ready", "Progressing", "Degraded"):
        assert f"c.type == '{condition}'" in expression["current"] + expression["failed"]
    operator = kustomizations["cachefleet-operator"]["spec"]
    [release] = documents(ROOT / operator["path"].removeprefix("./") / "release.yaml")
    assert release["kind"] == "HelmRelease"
    assert (ROOT / release["spec"]["chart"]["spec"]["chart"].removeprefix("./")).is_dir()


def test_argo_cd_applications_point_at_the_chart_and_the_examples() -> None:
    applications = documents(GITOPS / "argocd" / "application.yaml")
    for application in applications:
        assert (ROOT / application["spec"]["source"]["path"]).is_dir()
        assert "ServerSideApply=true" in application["spec"]["syncPolicy"]["syncOptions"]
    [clusters] = [a for a in applications if a["spec"]["source"]["path"] == "examples"]
    # The CacheClusters may be synced before the chart has installed their CRD.
    policy = clusters["spec"]["syncPolicy"]
    assert "SkipDryRunOnMissingResource=true" in policy["syncOptions"]
    assert policy["retry"]["limit"] > 0
