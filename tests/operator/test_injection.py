"""injection.py on real pod specs: what is added, what is left alone, and idempotence."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from cachefleet_operator.api import parse_spec
from cachefleet_operator.injection import (
    CONTAINER_NAME,
    INJECTED_ANNOTATION,
    SidecarFacts,
    facts_for_cluster,
    injection_patch,
    requested_cluster,
)

from tests.support.kube_schemas import NEWEST, OLDEST, problems
from tests.support.pod_security import assert_restricted

PODS = Path(__file__).parent / "pods"
POD_FILES = sorted(PODS.glob("*.yaml"))


def pod(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PODS / f"{name}.yaml").read_text())
    return {"apiVersion": "v1", "kind": "Pod", **loaded}


def facts(native: bool, **spec: Any) -> SidecarFacts:
    parsed = parse_spec({"shards": 3, **spec})
    return SidecarFacts.from_spec("sessions", "apps", parsed, native_sidecars=native)


def injected(body: dict[str, Any], native: bool, **spec: Any) -> dict[str, Any]:
    patch = injection_patch(body, facts(native, **spec))
    result: dict[str, Any] = jsonpatch.apply_patch(body, patch)
    return result


def sidecar_of(body: dict[str, Any]) -> dict[str, Any]:
    spec = body["spec"]
    found = [
        c
        for c in [*(spec.get("initContainers") or []), *spec["containers"]]
        if c["name"] == CONTAINER_NAME
    ]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("path", POD_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("native", [True, False], ids=["native", "regular"])
def test_injection_keeps_everything_the_pod_had_and_adds_the_sidecar(
    path: Path, native: bool
) -> None:
    before = pod(path.stem)
    after = injected(before, native)
    sidecar = sidecar_of(after)
    if native:
        assert after["spec"]["initContainers"][0]["name"] == CONTAINER_NAME
        assert sidecar["restartPolicy"] == "Always"
        # The app's containers start once the sidecar routes (/readyz), not once it merely runs.
        assert sidecar["startupProbe"]["httpGet"]["path"] == "/readyz"
        assert after["spec"]["initContainers"][1:] == before["spec"].get("initContainers", [])
        assert after["spec"]["containers"][0]["name"] == before["spec"]["containers"][0]["name"]
    else:
        assert after["spec"]["containers"][0]["name"] == CONTAINER_NAME
        assert "restartPolicy" not in sidecar and "startupProbe" not in sidecar
        assert after["spec"].get("initContainers") == before["spec"].get("initContainers")
    assert sidecar["command"] == [
        "cachefleet",
        "sidecar",
        "--config",
        "/etc/cachefleet/sidecar.json",
    ]
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert_restricted(sidecar)
    # The pod's own volumes, containers and their settings are all still there, unchanged
    # but for REDIS_URL.
    volumes = {v["name"]: v for v in after["spec"]["volumes"]}
    for volume in before["spec"].get("volumes", []):
        assert volumes[volume["name"]] == volume
    projected = volumes["cachefleet-sidecar"]["projected"]["sources"]
    assert projected[0]["configMap"] == {
        "name": "sessions-sidecar",
        "items": [{"key": "sidecar.json", "path": "sidecar.json"}],
    }
    assert projected[1]["secret"] == {
        "name": "sessions-auth",
        "items": [{"key": "password", "path": "auth/password"}],
    }
    apps = [c for c in after["spec"]["containers"] if c["name"] != CONTAINER_NAME]
    for old, new in zip(before["spec"]["containers"], apps, strict=True):
        urls = [e["value"] for e in new["env"] if e["name"] == "REDIS_URL"]
        own = [e["value"] for e in old.get("env", []) if e["name"] == "REDIS_URL"]
        assert urls == (own or ["redis://127.0.0.1:6379"])  # an app's own REDIS_URL wins
        assert {k: v for k, v in new.items() if k != "env"} == {
            k: v for k, v in old.items() if k != "env"
        }
    assert before["metadata"]["labels"] == after["metadata"]["labels"]
    assert after["metadata"]["annotations"][INJECTED_ANNOTATION] == "sessions"
    default = (before["metadata"].get("annotations") or {}).get(
        "kubectl.kubernetes.io/default-container"
    )
    assert after["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == (
        default or before["spec"]["containers"][0]["name"]
    )


@pytest.mark.parametrize("path", POD_FILES, ids=lambda p: p.stem)
def test_an_injected_pod_is_left_as_it_is(path: Path) -> None:
    for native in (True, False):
        once = injected(pod(path.stem), native)
        assert requested_cluster(once)[0] == "already-injected"
        assert injection_patch(once, facts(native)) == []


@pytest.mark.parametrize("path", POD_FILES, ids=lambda p: p.stem)
def test_injected_pods_validate_against_kubernetes_schemas(path: Path) -> None:
    body = pod(path.stem)
    body["metadata"].setdefault("name", "pod-0")
    # Native sidecars only where the server has them: the newest schema.
    assert problems(injected(body, True), (NEWEST,)) == []
    assert problems(injected(body, False), (OLDEST, NEWEST)) == []


def test_the_fleets_own_pods_and_unlabelled_pods_are_never_touched() -> None:
    shard = pod("bare")
    shard["metadata"]["labels"]["cachefleet.io/role"] = "shard"
    assert requested_cluster(shard) == ("fleet-pod", "sessions")
    unlabelled = pod("bare")
    del unlabelled["metadata"]["labels"]["cachefleet.io/cluster"]
    assert requested_cluster(unlabelled) == ("not-labelled", None)
    assert requested_cluster(pod("bare")) == ("injected", "sessions")


def test_the_clusters_spec_decides_image_ports_password_and_resources() -> None:
    body = injected(
        pod("bare"),
        False,
        auth={"existingSecret": {"name": "shared-redis", "key": "pw"}},
        sidecar={
            "image": "registry.example/cachefleet/sidecar:9",
            "port": 7000,
            "adminPort": 9500,
            "resources": {"requests": {"memory": "100Mi"}, "limits": {"memory": "200Mi"}},
        },
    )
    sidecar = sidecar_of(body)
    assert sidecar["image"] == "registry.example/cachefleet/sidecar:9"
    assert sidecar["ports"] == [{"name": "cf-admin", "containerPort": 9500, "protocol": "TCP"}]
    assert sidecar["resources"] == {
        "requests": {"cpu": "50m", "memory": "100Mi"},
        "limits": {"memory": "200Mi"},
    }
    app = body["spec"]["containers"][1]
    assert {"name": "REDIS_URL", "value": "redis://127.0.0.1:7000"} in app["env"]
    secret = body["spec"]["volumes"][0]["projected"]["sources"][1]["secret"]
    assert secret == {"name": "shared-redis", "items": [{"key": "pw", "path": "auth/password"}]}
    without_auth = injected(pod("bare"), False, auth={"enabled": False})
    assert len(without_auth["spec"]["volumes"][0]["projected"]["sources"]) == 1


def test_facts_come_from_the_last_valid_spec_or_nothing() -> None:
    cluster = {"metadata": {"name": "sessions", "namespace": "apps"}, "spec": {"shards": 0}}
    assert facts_for_cluster(cluster, native_sidecars=False) is None
    cluster["status"] = {"appliedSpec": {"shards": 2, "sidecar": {"port": 7001}}}
    found = facts_for_cluster(cluster, native_sidecars=False)
    assert found is not None and found.port == 7001
    cluster["spec"] = {"shards": 2, "sidecar": {"port": 7002}}
    found = facts_for_cluster(copy.deepcopy(cluster), native_sidecars=True)
    assert found is not None and found.port == 7002 and found.native_sidecars
