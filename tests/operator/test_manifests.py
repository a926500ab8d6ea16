"""What the operator writes: Kubernetes' schemas, security contexts and resource requests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cachefleet_operator.webhook.admission import MISSING_REASON, answer

from tests.operator.fleet import Fleet, cache_cluster
from tests.operator.test_injection import facts, pod
from tests.support.kube_schemas import problems
from tests.support.pod_security import assert_restricted_pod

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def _spec_of(path: Path) -> dict[str, Any]:
    for document in yaml.safe_load_all(path.read_text()):
        if document and document.get("kind") == "CacheCluster":
            spec: dict[str, Any] = document["spec"]
            return spec
    raise AssertionError(f"{path} has no CacheCluster")


def _everything(fleet: Fleet) -> list[dict[str, Any]]:
    plan = fleet.reconcile()
    return [*plan.apply, *plan.create_if_absent]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_child_validates_against_the_oldest_and_newest_kubernetes(path: Path) -> None:
    fleet = Fleet(cache_cluster(**_spec_of(path)))
    children = _everything(fleet)
    fleet.edit(shards=_spec_of(path)["shards"] + 1)  # a warm-up: two rings in the ConfigMap
    children += _everything(fleet)
    errors = [p for manifest in children for p in problems(manifest)]
    assert errors == [], "\n".join(errors)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_redis_pods_run_restricted_with_requests(path: Path) -> None:
    for manifest in _everything(Fleet(cache_cluster(**_spec_of(path)))):
        if manifest["kind"] != "StatefulSet":
            continue
        pod_spec = manifest["spec"]["template"]["spec"]
        assert_restricted_pod(pod_spec)
        for container in pod_spec["containers"]:
            assert set(container["resources"]["requests"]) >= {"cpu", "memory"}
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert {"/tmp", "/data"} <= mounts  # the only paths Redis and its script write


def test_shard_memory_requests_follow_maxmemory() -> None:
    fleet = Fleet(cache_cluster(shards=1, redis={"maxmemory": "1gb"}, gutter={"maxmemory": "64mb"}))
    sets = {m["metadata"]["name"]: m for m in _everything(fleet) if m["kind"] == "StatefulSet"}
    shard = sets["cache-shard-0"]["spec"]["template"]["spec"]["containers"][0]
    gutter = sets["cache-gutter"]["spec"]["template"]["spec"]["containers"][0]
    assert shard["resources"] == {"requests": {"cpu": "100m", "memory": "1280Mi"}}
    assert gutter["resources"] == {"requests": {"cpu": "50m", "memory": "80Mi"}}
    fleet.edit(redis={"resources": {"requests": {"cpu": "2"}, "limits": {"memory": "2Gi"}}})
    sets = {m["metadata"]["name"]: m for m in _everything(fleet) if m["kind"] == "StatefulSet"}
    shard = sets["cache-shard-0"]["spec"]["template"]["spec"]["containers"][0]
    assert shard["resources"] == {
        "requests": {"cpu": "2", "memory": "320Mi"},
        "limits": {"memory": "2Gi"},
    }


def _review(body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "operation": "CREATE",
            "namespace": "apps",
            "object": body,
            "dryRun": dry_run,
        },
    }


def test_admission_answers_with_a_patch_and_never_refuses() -> None:
    result = answer(_review(pod("bare")), facts(False))
    response = result.review["response"]
    assert response["uid"] == "u-1" and response["allowed"] is True
    patch = json.loads(base64.b64decode(response["patch"]))
    assert any(op["path"] == "/spec/containers/0" for op in patch)
    assert result.event is None


def test_a_missing_cluster_admits_the_pod_with_a_warning_and_an_event_on_its_owner() -> None:
    body = pod("nginx-bitnami")
    result = answer(_review(body), None)
    assert result.review["response"]["allowed"] is True
    assert "patch" not in result.review["response"]
    assert result.event is not None and result.event.type == "Warning"
    assert (
        result.event.reason == MISSING_REASON
        and "'sessions' does not exist" in result.event.message
    )
    assert result.involved == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-nginx-6d4b75cb6d",
        "uid": "2f0b8c5e-6a54-4d1e-9a1e-3b1f0c9d7e21",
        "namespace": "apps",
    }
    assert result.review["response"]["warnings"] == [result.event.message]
    assert answer(_review(body, dry_run=True), None).event is None  # sideEffects: NoneOnDryRun


def test_unlabelled_and_fleet_pods_get_an_empty_answer() -> None:
    shard = pod("bare")
    shard["metadata"]["labels"]["cachefleet.io/role"] = "shard"
    for body in (shard, {"metadata": {"name": "x"}, "spec": {"containers": []}}):
        response = answer(_review(body), facts(False)).review["response"]
        assert response == {"uid": "u-1", "allowed": True}


def test_the_audit_finds_labelled_pods_without_sidecar_only() -> None:
    from cachefleet_operator.sidecar_audit import without_sidecar
    from cachefleet_operator.webhook.admission import answer as admit

    bare = pod("bare")
    bare["metadata"]["uid"] = "u-bare"
    patched = admit(_review(pod("bare")), facts(True)).review["response"]["patch"]
    import jsonpatch

    injected = jsonpatch.apply_patch(pod("bare"), json.loads(base64.b64decode(patched)))
    shard = pod("bare")
    shard["metadata"]["labels"]["cachefleet.io/role"] = "shard"
    going = pod("bare")
    going["metadata"]["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    assert without_sidecar([bare, injected, shard, going]) == [bare]


def test_the_operators_own_objects_validate_too() -> None:
    from datetime import UTC, datetime

    from cachefleet_operator.leader import ElectionTiming, LeaseState, decide, released
    from cachefleet_operator.webhook.certificates import ensure
    from cachefleet_operator.webhook.tls import TlsKeeper

    now = datetime.now(UTC)
    where = {"name": "cachefleet-operator", "namespace": "cachefleet-system"}
    lease = decide(None, "replica-a", now, ElectionTiming(), **where).lease
    assert lease is not None
    given_up = released(
        LeaseState.from_lease({**lease, "metadata": {"resourceVersion": "3"}}), now=now, **where
    )
    keeper = TlsKeeper(
        kube=None,  # type: ignore[arg-type]  # only the Secret's rendering is used
        namespace="cachefleet-system",
        secret_name="cachefleet-webhook-tls",
        configuration_name="cachefleet-sidecar-injector",
        hosts=["127.0.0.1"],
    )
    secret = keeper._secret(ensure(None, ["127.0.0.1"], now), None)
    errors = [p for manifest in (lease, given_up, secret) for p in problems(manifest)]
    assert errors == [], "\n".join(errors)
