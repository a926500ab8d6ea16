"""The install path against a real kube-apiserver: the chart as rendered, the operator under
the chart's ServiceAccount, and sidecar injection by the operator's webhook on loopback.

There is no kubelet: pods are created and stay Pending, which is all admission needs.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import SERVICE_ACCOUNT, Installed
from tests.e2e.harness import AuditLog, Kubectl, Operator, wait_for
from tests.e2e.test_operator import cache_cluster, events, wait_stable
from tests.support.pod_security import assert_restricted

pytestmark = pytest.mark.e2e

SIDECAR = "cachefleet-sidecar"
CLUSTER_LABEL = "cachefleet.io/cluster"


def app_pod(name: str, cluster: str | None, **labels: str) -> dict[str, Any]:
    all_labels = {"app": "client", **labels}
    if cluster is not None:
        all_labels[CLUSTER_LABEL] = cluster
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {
            "containers": [
                {"name": "client", "image": "redis:7.2", "command": ["sleep", "infinity"]}
            ]
        },
    }


def create(kubectl: Kubectl, manifest: dict[str, Any]) -> dict[str, Any]:
    """POST it (kubectl create) and return what the API server stored."""
    result = kubectl.run("create", "-f", "-", "-o", "json", input=json.dumps(manifest))
    stored: dict[str, Any] = json.loads(result.stdout)
    return stored


def names(containers: list[dict[str, Any]] | None) -> list[str]:
    return [c["name"] for c in containers or []]


def warned(kubectl: Kubectl, pod: str, reason: str, timeout: float) -> dict[str, Any]:
    """The one Event ``reason`` on the pod, waited for; it must be a Warning."""

    def found() -> list[dict[str, Any]] | None:
        selector = f"involvedObject.kind=Pod,involvedObject.name={pod},reason={reason}"
        listing = kubectl.json("get", "events", "--field-selector", selector)
        items: list[dict[str, Any]] = listing["items"]
        return items or None

    [event] = wait_for(found, f"a {reason} Event on pod {pod}", timeout, interval=1)
    assert event["type"] == "Warning", event
    return event


@pytest.fixture(scope="module")
def injecting(kubectl: Kubectl, operator: Operator) -> str:
    """A CacheCluster to inject, and the webhook serving with a caBundle the API server trusts."""
    kubectl.apply(cache_cluster("inject", 2))
    wait_stable(kubectl, "inject", 2)

    def ca_bundle() -> str | None:
        config = kubectl.json("get", "mutatingwebhookconfiguration", "cachefleet-sidecar-injector")
        return config["webhooks"][0]["clientConfig"].get("caBundle")

    wait_for(ca_bundle, "the operator to set the webhook's caBundle", 60)
    # Served once the certificate is loaded: a labelled pod comes back injected.
    probe = app_pod("probe", "inject")

    def injected() -> bool:
        stored = create(kubectl, probe)
        kubectl.run("delete", "pod", "probe", "--wait=false")
        if SIDECAR in names(stored["spec"]["containers"]):
            return True
        wait_for(lambda: kubectl.get("pod", "probe") is None, "probe pod deleted", 30)
        return False

    wait_for(injected, "the webhook to inject", 60, interval=1)
    return "inject"


def test_the_chart_installs_crd_rbac_and_webhook(kubectl: Kubectl, chart: Installed) -> None:
    crd = kubectl.json("get", "crd", "cacheclusters.cachefleet.io")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    roles = kubectl.json("get", "roles", "-n", chart.release_namespace)["items"]
    assert [r["metadata"]["name"] for r in roles] == ["cachefleet-own"]
    watched = kubectl.json("get", "roles")["items"]
    assert [r["metadata"]["name"] for r in watched] == ["cachefleet-watched"]
    config = kubectl.json("get", "mutatingwebhookconfiguration", "cachefleet-sidecar-injector")
    assert config["webhooks"][0]["failurePolicy"] == "Ignore"
    account = kubectl.get("serviceaccount", SERVICE_ACCOUNT)
    assert account is None  # it lives in the release namespace, not the watched one
    assert (
        kubectl.run(
            "get", "serviceaccount", SERVICE_ACCOUNT, "-n", chart.release_namespace
        ).returncode
        == 0
    )


def test_the_operator_acts_as_the_charts_service_account_only(
    kubectl: Kubectl, operator: Operator, chart: Installed, audit: AuditLog | None, injecting: str
) -> None:
    if audit is None:
        pytest.skip("needs the local control plane's audit log (KUBECONFIG is set)")
    writes = audit.by(operator)
    assert writes, "the operator wrote nothing"
    expected = f"system:serviceaccount:{chart.release_namespace}:{SERVICE_ACCOUNT}"
    assert {w.user for w in writes} == {expected}
    refused = [w for w in writes if w.code == 403]
    assert refused == [], refused
    assert "forbidden" not in operator.log_text().lower(), operator.tail()
    # What the RBAC does not grant is refused by the API server: the token is really scoped.
    as_operator = Kubectl(chart.service_account_kubeconfig, kubectl.namespace)
    denied = as_operator.run("delete", "secret", "inject-auth", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    denied = as_operator.run("get", "pods", "-n", "kube-system", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr


def test_the_webhooks_certificate_is_in_its_secret_and_the_ca_bundle(
    kubectl: Kubectl, chart: Installed, injecting: str
) -> None:
    secret = kubectl.json("get", "secret", "cachefleet-webhook-tls", "-n", chart.release_namespace)
    assert secret["type"] == "kubernetes.io/tls"
    config = kubectl.json("get", "mutatingwebhookconfiguration", "cachefleet-sidecar-injector")
    bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
    assert bundle == base64.b64decode(secret["data"]["bundle.crt"])


def test_a_labelled_pod_comes_back_with_the_sidecar(
    kubectl: Kubectl, operator: Operator, injecting: str
) -> None:
    stored = create(kubectl, app_pod("client-1", injecting))
    spec = stored["spec"]
    # The suite's API server is 1.20: no native sidecars, so a regular first container.
    assert names(spec["containers"]) == [SIDECAR, "client"]
    assert "cachefleet-sidecar" not in names(spec.get("initContainers"))
    sidecar = spec["containers"][0]
    assert sidecar["command"] == [
        "cachefleet",
        "sidecar",
        "--config",
        "/etc/cachefleet/sidecar.json",
    ]
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert_restricted(sidecar)  # as the API server stored the webhook's patch
    assert sidecar["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    client = spec["containers"][1]
    assert {"name": "REDIS_URL", "value": "redis://127.0.0.1:6379"} in client["env"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "cachefleet-sidecar"]
    sources = volume["projected"]["sources"]
    assert sources[0]["configMap"]["name"] == "inject-sidecar"
    assert sources[1]["secret"]["name"] == "inject-auth"
    assert stored["metadata"]["annotations"]["cachefleet.io/sidecar-injected"] == injecting
    assert "sidecars injected as containers" in operator.log_text()


def test_the_same_spec_twice_is_injected_once_each_time(kubectl: Kubectl, injecting: str) -> None:
    first = create(kubectl, app_pod("twice-1", injecting))
    second = create(kubectl, app_pod("twice-2", injecting))
    assert first["spec"]["containers"] == second["spec"]["containers"]
    # An already injected spec (say, a pod exported and created again) is left as it is.
    again = copy.deepcopy(first)
    again["metadata"] = {
        "name": "twice-3",
        "labels": first["metadata"]["labels"],
        "annotations": first["metadata"]["annotations"],
    }
    # What the API server fills in and refuses to be given back.
    for key in ("nodeName", "priority"):
        again["spec"].pop(key, None)
    again.pop("status", None)
    third = create(kubectl, again)
    assert names(third["spec"]["containers"]) == [SIDECAR, "client"]
    assert third["spec"]["containers"] == first["spec"]["containers"]
    assert len([v for v in third["spec"]["volumes"] if v["name"] == "cachefleet-sidecar"]) == 1


def test_unlabelled_pods_and_the_fleets_own_pods_are_untouched(
    kubectl: Kubectl, injecting: str
) -> None:
    plain = create(kubectl, app_pod("plain", None))
    assert names(plain["spec"]["containers"]) == ["client"]
    # The shard pods the StatefulSet controller created carry the cluster label and a role.
    pods = wait_for(
        lambda: (
            kubectl.json("get", "pods", "-l", f"{CLUSTER_LABEL}={injecting},cachefleet.io/role")[
                "items"
            ]
            or None
        ),
        "the shard pods",
        60,
    )
    for pod in pods:
        assert SIDECAR not in names(pod["spec"]["containers"]), pod["metadata"]["name"]
        assert names(pod["spec"]["containers"]) == ["redis"]


def test_a_label_naming_no_cache_cluster_gets_a_warning_and_no_sidecar(
    kubectl: Kubectl, injecting: str
) -> None:
    result = kubectl.run(
        "create", "-f", "-", "-o", "json", input=json.dumps(app_pod("orphan", "no-such-cluster"))
    )
    stored = json.loads(result.stdout)
    assert names(stored["spec"]["containers"]) == ["client"]
    assert "no-such-cluster" in result.stderr  # the admission warning, shown by kubectl

    event = warned(kubectl, "orphan", "SidecarNotInjected", 30)
    assert "CacheCluster 'no-such-cluster' does not exist" in event["message"]


def test_with_the_webhook_down_a_pod_starts_without_sidecar_and_gets_an_event(
    kubectl: Kubectl, operator: Operator, injecting: str
) -> None:
    operator.stop()  # SIGTERM: the webhook stops answering, the Lease is released
    try:
        stored = create(kubectl, app_pod("unserved", injecting))
        # failurePolicy Ignore: created, without the sidecar.
        assert names(stored["spec"]["containers"]) == ["client"]
    finally:
        operator.start()

    event = warned(kubectl, "unserved", "SidecarMissing", 60)  # the leader's, once it is back
    assert "started without the cachefleet sidecar" in event["message"]
    # And it comes back: the next pod is injected again.
    wait_for(
        lambda: (
            SIDECAR
            in names(
                create(kubectl, app_pod(f"after-{time.monotonic_ns()}", injecting))["spec"][
                    "containers"
                ]
            )
        ),
        "injection after the restart",
        60,
        interval=2,
    )


def test_an_object_with_the_label_but_not_owned_by_the_cluster_survives(
    kubectl: Kubectl, operator: Operator, injecting: str
) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "inject-app-settings", "labels": {CLUSTER_LABEL: injecting}},
            "data": {"greeting": "made by the app's Helm chart"},
        }
    )
    time.sleep(3 * 2.0 + 1)  # three resyncs
    assert kubectl.get("configmap", "inject-app-settings") is not None
    assert not [e for e in events(kubectl, injecting) if e["type"] == "Warning"]
