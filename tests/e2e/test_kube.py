"""kube.py, the one module that talks to the API, against a real kube-apiserver.

Each test counts the requests it expects: the point of this module is as much the calls it does
not make (an idle resync) as the ones it does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cachefleet_operator.kube import FIELD_MANAGER, Kube, KubeError
from cachefleet_operator.plan import APPLIED_HASH_ANNOTATION, ChildRef, EventSpec

from tests.e2e.harness import Kubectl, create_namespace, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_namespace(kubeconfig: Path, namespace: str) -> Iterator[str]:
    """A namespace no operator watches: these tests write status themselves."""
    admin = Kubectl(kubeconfig)
    name = create_namespace(admin, "cachefleet-kube")
    yield name
    admin.run("delete", "namespace", name, "--wait=false", check=False, namespaced=False)


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[Kube]:
    connected = Kube.connect(str(kubeconfig))
    yield connected
    connected.close()


def _labelled(
    kind: str, api_version: str, name: str, namespace: str, **rest: Any
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"cachefleet.io/cluster": "kube-test"},
            "annotations": {APPLIED_HASH_ANNOTATION: rest.pop("hash", "h1")},
        },
        **rest,
    }


def test_apply_is_skipped_when_the_live_hash_matches(kube: Kube, own_namespace: str) -> None:
    manifest = _labelled("ConfigMap", "v1", "kube-test-config", own_namespace, data={"a": "1"})
    assert kube.apply(manifest, None) is True
    live = kube.list_children(own_namespace, "kube-test")[("ConfigMap", "kube-test-config")]
    managers = {entry["manager"] for entry in live["metadata"]["managedFields"]}
    assert managers == {FIELD_MANAGER}
    counted = kube.counted()
    assert counted.apply(manifest, live) is False
    assert counted.requests == 0  # nothing sent at all
    changed = _labelled(
        "ConfigMap", "v1", "kube-test-config", own_namespace, data={"a": "2"}, hash="h2"
    )
    assert counted.apply(changed, live) is True
    assert dict(counted.counts) == {"APPLY": 1} and counted.writes == 1
    assert kube.delete(ChildRef("v1", "ConfigMap", "kube-test-config"), own_namespace) is True
    assert kube.delete(ChildRef("v1", "ConfigMap", "kube-test-config"), own_namespace) is False


def test_ports_without_protocol_and_pdbs_of_either_version_apply(
    kube: Kube, own_namespace: str
) -> None:
    service = _labelled(
        "Service",
        "v1",
        "kube-test-svc",
        own_namespace,
        spec={
            "clusterIP": "None",
            "ports": [{"name": "redis", "port": 6379}],
            "selector": {"a": "b"},
        },
    )
    assert kube.apply(service, None) is True
    budget = _labelled(
        "PodDisruptionBudget",
        "policy/v1",
        "kube-test-pdb",
        own_namespace,
        spec={"maxUnavailable": 1, "selector": {"matchLabels": {"a": "b"}}},
    )
    assert kube.apply(budget, None) is True
    children = kube.list_children(own_namespace, "kube-test")
    assert children[("Service", "kube-test-svc")]["spec"]["ports"][0]["protocol"] == "TCP"
    served = children[("PodDisruptionBudget", "kube-test-pdb")]["apiVersion"]
    assert served in ("policy/v1", "policy/v1beta1")
    assert kube.delete(ChildRef("policy/v1", "PodDisruptionBudget", "kube-test-pdb"), own_namespace)
    assert kube.delete(ChildRef("v1", "Service", "kube-test-svc"), own_namespace)


def test_create_if_absent_never_overwrites(
    kube: Kube, own_namespace: str, kubeconfig: Path
) -> None:
    secret = _labelled(
        "Secret", "v1", "kube-test-auth", own_namespace, stringData={"password": "one"}
    )
    assert kube.create_if_absent(secret, None) is True
    again = _labelled(
        "Secret", "v1", "kube-test-auth", own_namespace, stringData={"password": "two"}
    )
    # Not in the observed children (a stale listing): the 409 is what "if absent" allows.
    assert kube.create_if_absent(again, None) is False
    live = kube.get_secret(own_namespace, "kube-test-auth")
    assert live is not None and live["data"]["password"] == "b25l"  # base64("one")
    counted = kube.counted()
    assert counted.create_if_absent(again, live) is False and counted.requests == 0
    # The operator may never delete a password Secret: its RBAC has no such rule, and the
    # client refuses the request before sending it.
    with pytest.raises(KubeError, match="not in the operator's RBAC rules") as refused:
        counted.delete(ChildRef("v1", "Secret", "kube-test-auth"), own_namespace)
    assert refused.value.reason == "UndeclaredAccess" and counted.requests == 0
    Kubectl(kubeconfig, own_namespace).run("delete", "secret", "kube-test-auth")


def test_status_is_written_only_when_it_differs_and_never_from_a_stale_read(
    kube: Kube, kubeconfig: Path, own_namespace: str
) -> None:
    kubectl = Kubectl(kubeconfig, own_namespace)
    kubectl.apply(
        {
            "apiVersion": "cachefleet.io/v1alpha1",
            "kind": "CacheCluster",
            "metadata": {"name": "kube-status", "namespace": own_namespace},
            "spec": {"shards": 1},
        }
    )
    cluster = wait_for(
        lambda: kube.get_cluster(own_namespace, "kube-status"), "the CacheCluster", 10
    )
    live = cluster.get("status") or {}
    counted = kube.counted()
    assert counted.patch_status(cluster, live) is None and counted.requests == 0
    desired = {**live, "phase": "Grace", "pendingChange": "x"}
    stale = dict(cluster)
    written = kube.patch_status(cluster, desired)
    assert written is not None and written["status"]["phase"] == "Grace"
    with pytest.raises(KubeError) as conflict:
        kube.patch_status(stale, {**desired, "phase": "Stable"})
    assert conflict.value.status == 409
    # A key missing from the desired status is removed from the live one.
    fresh = kube.get_cluster(own_namespace, "kube-status")
    assert fresh is not None
    without = {k: v for k, v in fresh["status"].items() if k != "pendingChange"}
    patched = kube.patch_status(fresh, without)
    assert patched is not None and "pendingChange" not in patched["status"]
    kube.post_event(fresh, EventSpec("Normal", "KubeTest", "an event from the kube test"))
    events = kubectl.json("get", "events", "--field-selector", "reason=KubeTest")["items"]
    assert [
        (e["involvedObject"]["name"], e["involvedObject"]["uid"], e["message"]) for e in events
    ] == [("kube-status", fresh["metadata"]["uid"], "an event from the kube test")]
    kubectl.run("delete", "cc", "kube-status")


def test_api_errors_carry_the_servers_message(kube: Kube, own_namespace: str) -> None:
    bad = _labelled("ConfigMap", "v1", "Not_A_Valid_Name", own_namespace, data={})
    with pytest.raises(KubeError) as error:
        kube.apply(bad, None)
    assert error.value.status == 422 and "Not_A_Valid_Name" in error.value.message
