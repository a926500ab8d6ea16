"""GitOps against a real kube-apiserver: the same manifests applied twice change nothing, the
user's field manager and the operator's never conflict under server-side apply, and the Argo CD
health check reads the statuses the operator really writes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.chart.argocd import health
from tests.chart.chart import manifests
from tests.e2e.conftest import Installed
from tests.e2e.harness import Kubectl, Operator, wait_for
from tests.e2e.test_operator import EXAMPLES, cache_cluster, condition, wait_stable

pytestmark = pytest.mark.e2e


def apply_server_side(kubectl: Kubectl, documents: list[dict[str, Any]], manager: str) -> str:
    text = "".join("---\n" + json.dumps(d) + "\n" for d in documents)
    return kubectl.run(
        "apply",
        "--server-side",
        f"--field-manager={manager}",
        "-f",
        "-",
        input=text,
        namespaced=False,
    ).stdout


def versions(kubectl: Kubectl, documents: list[dict[str, Any]]) -> dict[str, str]:
    found = {}
    for document in documents:
        meta = document["metadata"]
        args = ["get", document["kind"], meta["name"], "-o", "json"]
        if meta.get("namespace"):
            args += ["-n", meta["namespace"]]
        live = json.loads(kubectl.run(*args, namespaced=False).stdout)
        found[f"{document['kind']}/{meta['name']}"] = live["metadata"]["resourceVersion"]
    return found


def test_applying_the_chart_and_a_cluster_twice_changes_nothing_and_never_conflicts(
    kubectl: Kubectl, operator: Operator, chart: Installed, namespace: str
) -> None:
    rendered = manifests(
        {
            "replicas": 1,
            "watch": {"namespaces": [namespace]},
            "webhook": {"url": f"https://127.0.0.1:{chart.webhook_port}/mutate-pods"},
        },
        release="cachefleet",
        namespace=chart.release_namespace,
    )
    cluster = cache_cluster("gitops", 2)
    cluster["metadata"]["namespace"] = namespace
    documents = [*rendered, cluster]
    # A GitOps tool's apply: its own field manager, no --force-conflicts.
    apply_server_side(kubectl, documents, "argocd-controller")
    wait_stable(kubectl, "gitops", 2)
    wait_for(
        lambda: kubectl.json("get", "mutatingwebhookconfiguration", "cachefleet-sidecar-injector")[
            "webhooks"
        ][0]["clientConfig"].get("caBundle"),
        "the caBundle, the operator's field in the tool's object",
        60,
    )
    time.sleep(2.5)  # a resync: the operator has written everything it will
    before = versions(kubectl, documents)
    # Again: the operator's status and caBundle are not the tool's fields, so no conflict,
    # and nothing the tool owns differs, so nothing is written.
    output = apply_server_side(kubectl, documents, "argocd-controller")
    assert "conflict" not in output.lower()
    assert versions(kubectl, documents) == before
    config = kubectl.json(
        "get",
        "mutatingwebhookconfiguration",
        "cachefleet-sidecar-injector",
        "--show-managed-fields",
    )
    assert config["webhooks"][0]["clientConfig"].get("caBundle")
    managers = {m["manager"] for m in config["metadata"]["managedFields"]}
    assert {"argocd-controller", "cachefleet-operator"} <= managers
    body = kubectl.json("get", "cc", "gitops", "--show-managed-fields")
    entries = body["metadata"]["managedFields"]
    assert "argocd-controller" in {m["manager"] for m in entries}
    # The operator owns status only (1.20 records no "subresource": look at the fields).
    owned = {key for m in entries if m["manager"] == "cachefleet-operator" for key in m["fieldsV1"]}
    assert owned == {"f:status"}, owned


def test_examples_applied_twice_change_nothing(kubectl: Kubectl, operator: Operator) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        kubectl.run("apply", "-f", str(path))
    time.sleep(2.5)
    again = [
        kubectl.run("apply", "-f", str(path)).stdout for path in sorted(EXAMPLES.glob("*.yaml"))
    ]
    lines = [line for output in again for line in output.splitlines() if line.strip()]
    assert lines and all(line.endswith("unchanged") for line in lines), lines


def test_the_argo_cd_health_check_on_live_statuses(kubectl: Kubectl, operator: Operator) -> None:
    kubectl.apply(cache_cluster("health", 2))
    live = wait_stable(kubectl, "health", 2)
    # No kubelet: shards are never ready, so Argo CD would wait (Progressing), not fail.
    status, message = health(kubectl.json("get", "cc", "health"))
    assert (status, message) == ("Progressing", condition(kubectl, "health", "Ready")["message"])
    assert live["phase"] == "Stable"
    kubectl.patch("cc", "health", {"spec": {"weights": {"shard-0": 0}}})
    wait_for(
        lambda: (condition(kubectl, "health", "Degraded") or {}).get("status") == "True",
        "Degraded",
        30,
    )
    status, message = health(kubectl.json("get", "cc", "health"))
    assert status == "Degraded" and "spec.weights.shard-0" in message
