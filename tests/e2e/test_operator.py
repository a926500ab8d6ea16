"""The operator against a real kube-apiserver and kube-controller-manager.

There is no kubelet: StatefulSet pods stay Pending, so every CacheCluster here sets
``warmUp.waitForReadyShards: false`` and the warm-up's hit ratio comes from the operator's
``--warmup-signal file:`` (``Operator.set_hit_ratio``), never from running Redis servers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.e2e.harness import KUBECTL, ROOT, AuditedWrite, AuditLog, Kubectl, Operator, wait_for

pytestmark = pytest.mark.e2e

EXAMPLES = ROOT / "examples"
CHILD_KINDS = "statefulsets,services,configmaps,secrets,poddisruptionbudgets"
CLUSTER_LABEL = "cachefleet.io/cluster"
# Garbage collection of objects owned by a custom resource starts about 30 s after the CRD
# appears, and the controller-manager shares 2 cores with everything else.
GC_TIMEOUT = 150.0
STEP_SECONDS = 1


def cache_cluster(name: str, shards: int, **spec: Any) -> dict[str, Any]:
    """A CacheCluster that can make progress without running pods, with a fast warm-up."""
    warm_up = {
        "steps": [10, 50, 100],
        "stepSeconds": STEP_SECONDS,
        "cutoverHitRatio": 0.9,
        "timeoutSeconds": 600,
        "graceSeconds": 2,
        "waitForReadyShards": False,
        **spec.pop("warmUp", {}),
    }
    return {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "CacheCluster",
        "metadata": {"name": name},
        "spec": {"shards": shards, "warmUp": warm_up, **spec},
    }


def children(kubectl: Kubectl, cluster: str) -> list[dict[str, Any]]:
    listing = kubectl.json("get", CHILD_KINDS, "-l", f"{CLUSTER_LABEL}={cluster}")
    items: list[dict[str, Any]] = listing["items"]
    return items


def versions(kubectl: Kubectl, cluster: str) -> dict[str, str]:
    """resourceVersion of the CacheCluster and each child: any write changes one."""
    found = {
        f"{item['kind']}/{item['metadata']['name']}": item["metadata"]["resourceVersion"]
        for item in children(kubectl, cluster)
    }
    body = kubectl.get("cc", cluster)
    assert body is not None
    found[f"CacheCluster/{cluster}"] = body["metadata"]["resourceVersion"]
    return found


def child_versions(kubectl: Kubectl, cluster: str) -> dict[str, str]:
    found = versions(kubectl, cluster)
    del found[f"CacheCluster/{cluster}"]
    return found


def status(kubectl: Kubectl, cluster: str) -> dict[str, Any]:
    body = kubectl.get("cc", cluster)
    assert body is not None, f"CacheCluster {cluster} is gone"
    found: dict[str, Any] = body.get("status") or {}
    return found


def condition(kubectl: Kubectl, cluster: str, kind: str) -> dict[str, Any] | None:
    return next(
        (c for c in status(kubectl, cluster).get("conditions", []) if c["type"] == kind), None
    )


def stable(kubectl: Kubectl, cluster: str, shards: int) -> dict[str, Any] | None:
    body = kubectl.get("cc", cluster)
    if body is None:
        return None
    current = body.get("status") or {}
    settled = (
        current.get("phase") == "Stable"
        and current.get("shards") == shards
        and current.get("observedGeneration") == body["metadata"]["generation"]
    )
    return current if settled else None


def wait_stable(kubectl: Kubectl, cluster: str, shards: int, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: stable(kubectl, cluster, shards), f"{cluster} Stable with {shards} shards", timeout
    )


def events(kubectl: Kubectl, cluster: str) -> list[dict[str, Any]]:
    listing = kubectl.json(
        "get",
        "events",
        "--field-selector",
        f"involvedObject.name={cluster},involvedObject.kind=CacheCluster",
    )
    items: list[dict[str, Any]] = listing["items"]
    return items


class StatusRecorder:
    """Every status a CacheCluster goes through, from a watch, so no short phase is missed."""

    # kubectl runs watch output through a tab writer, so fields are split by "|", not tabs.
    TEMPLATE = (
        "{.metadata.resourceVersion}|{.status.phase}|{.status.warmUp.phase}"
        '|{.status.warmUp.percent}{"\\n"}'
    )

    def __init__(self, kubectl: Kubectl, cluster: str) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self._process = subprocess.Popen(
            [
                KUBECTL,
                "--kubeconfig",
                str(kubectl.kubeconfig),
                "--namespace",
                kubectl.namespace,
                "get",
                "cc",
                cluster,
                "--watch",
                "-o",
                f"jsonpath={self.TEMPLATE}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            parts = [part.strip() for part in line.split("|")]
            if len(parts) == 4:
                self.seen.append((parts[1], parts[2], parts[3]))

    def phases(self) -> list[str]:
        """Distinct consecutive cluster phases, in order, after the Stable one it started in."""
        result: list[str] = []
        for phase, _, _ in self.seen:
            if phase and (not result or result[-1] != phase):
                result.append(phase)
        return result[1:] if result[:1] == ["Stable"] else result

    def percents(self) -> list[float]:
        result: list[float] = []
        for _, warm_phase, percent in self.seen:
            if warm_phase == "Shadowing" and percent:
                value = float(percent)
                if not result or result[-1] != value:
                    result.append(value)
        return result

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


@pytest.fixture
def recorder(kubectl: Kubectl) -> Iterator[list[StatusRecorder]]:
    made: list[StatusRecorder] = []
    yield made
    for one in made:
        one.stop()


def test_examples_create_every_child_owned_by_its_cluster(
    kubectl: Kubectl, operator: Operator
) -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert files, "examples/ has no CacheCluster manifests"
    clusters = []
    for path in files:
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "CacheCluster":
                clusters.append(document)
        kubectl.run("apply", "-f", str(path))
    assert clusters
    for document in clusters:
        name = document["metadata"]["name"]
        shards = document["spec"]["shards"]
        body = wait_for(lambda name=name: kubectl.get("cc", name), f"CacheCluster {name}", 30)
        uid = body["metadata"]["uid"]

        def shard_sets(name: str = name, shards: int = shards) -> list[dict[str, Any]] | None:
            sets = [
                item
                for item in children(kubectl, name)
                if item["kind"] == "StatefulSet"
                and item["metadata"]["labels"].get("cachefleet.io/role") == "shard"
            ]
            return sets if len(sets) == shards else None

        wait_for(shard_sets, f"{shards} shard StatefulSets of {name}", 60)
        found = children(kubectl, name)
        kinds = {item["kind"] for item in found}
        assert {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds, kinds
        if document["spec"].get("auth", {}).get("existingSecret") is None:
            assert "Secret" in kinds
        for item in found:
            owners = item["metadata"].get("ownerReferences") or []
            assert [(o["kind"], o["name"], o["uid"], o.get("controller")) for o in owners] == [
                ("CacheCluster", name, uid, True)
            ], f"{item['kind']}/{item['metadata']['name']} owner references: {owners}"
        # One headless Service per shard, named like its StatefulSet: stable DNS names.
        services = {i["metadata"]["name"]: i for i in found if i["kind"] == "Service"}
        for sts in shard_sets() or []:
            service = services[sts["metadata"]["name"]]
            assert service["spec"]["clusterIP"] == "None"
            assert sts["spec"]["serviceName"] == sts["metadata"]["name"]


def test_status_and_printer_columns(kubectl: Kubectl, operator: Operator) -> None:
    kubectl.apply(cache_cluster("columns", 3))
    current = wait_stable(kubectl, "columns", 3)
    assert current["readyShards"] == 0  # no kubelet: pods stay Pending
    assert current["ring"]["version"] == 1
    assert len(current["shardStatuses"]) == 3
    assert abs(sum(s["share"] for s in current["shardStatuses"]) - 1.0) < 1e-5
    ready = condition(kubectl, "columns", "Ready")
    assert ready is not None and ready["status"] == "False", ready
    table = kubectl.run("get", "cc", "columns").stdout.splitlines()
    header = table[0].split()
    for column in ("NAME", "SHARDS", "READY", "PHASE", "WARM-UP", "MOVED", "AGE"):
        assert column in header, table[0]
    row = table[1].split()
    assert row[0] == "columns" and row[1] == "3" and row[2] == "0" and row[3] == "Stable", table


def test_idle_resync_writes_nothing(
    kubectl: Kubectl, operator: Operator, audit: AuditLog | None
) -> None:
    """Judged on the operator's own write requests (the API server's audit log), not on
    resourceVersions, which kube-controller-manager's status updates also change."""
    if audit is None:
        pytest.skip("needs the local control plane's audit log (KUBECONFIG is set)")
    kubectl.apply(cache_cluster("idle", 2))
    wait_stable(kubectl, "idle", 2)
    time.sleep(1.0)  # let the write of the settled status come back through the watch
    offset = audit.offset()
    log_offset = len(operator.log_text())
    time.sleep(3 * 2.0 + 1.0)  # three resync periods

    def ours(write: AuditedWrite) -> bool:
        return write.namespace == kubectl.namespace and (
            write.name == "idle" or write.name.startswith("idle-")
        )

    writes = [w for w in audit.by(operator, offset) if ours(w)]
    assert writes == [], writes
    lines = [
        line
        for line in operator.log_text()[log_offset:].splitlines()
        if "reconciled " in line and "/idle " in line
    ]
    assert len(lines) >= 2, operator.tail()
    assert all("writes=0" in line for line in lines), lines
    # The audit log does see this operator: its reconciles of "idle" wrote when it was new.
    assert any(ours(w) for w in audit.by(operator)), "no write of the operator was audited"


def test_scale_subresource_changes_shards(kubectl: Kubectl, operator: Operator) -> None:
    kubectl.apply(cache_cluster("scaled", 2, warmUp={"enabled": False}))
    wait_stable(kubectl, "scaled", 2)
    kubectl.run("scale", "cc/scaled", "--replicas=3")
    body = kubectl.get("cc", "scaled")
    assert body is not None and body["spec"]["shards"] == 3
    path = f"/apis/cachefleet.io/v1alpha1/namespaces/{kubectl.namespace}/cacheclusters/scaled"
    scale = json.loads(kubectl.run("get", "--raw", f"{path}/scale", namespaced=False).stdout)
    assert scale["spec"]["replicas"] == 3
    wait_stable(kubectl, "scaled", 3)
    shard_sets = [
        i
        for i in children(kubectl, "scaled")
        if i["kind"] == "StatefulSet" and "gutter" not in i["metadata"]["name"]
    ]
    assert sorted(i["metadata"]["name"] for i in shard_sets) == [
        "scaled-shard-0",
        "scaled-shard-1",
        "scaled-shard-2",
    ]


def test_invalid_cluster_rejected_by_the_api_server(kubectl: Kubectl, operator: Operator) -> None:
    result = kubectl.run(
        "apply", "-f", "-", input=json.dumps(cache_cluster("invalid", 0)), check=False
    )
    assert result.returncode != 0
    assert "spec.shards" in result.stderr and "greater than or equal to 1" in result.stderr, (
        result.stderr
    )
    assert kubectl.get("cc", "invalid") is None
    wrong_type = cache_cluster("invalid", 1)
    wrong_type["spec"]["redis"] = {"evictionPolicy": "sometimes"}
    result = kubectl.run("apply", "-f", "-", input=json.dumps(wrong_type), check=False)
    assert result.returncode != 0 and "spec.redis.evictionPolicy" in result.stderr, result.stderr


def test_wrong_but_schema_valid_spec_degrades_and_changes_nothing(
    kubectl: Kubectl, operator: Operator
) -> None:
    kubectl.apply(cache_cluster("wrong", 2))
    wait_stable(kubectl, "wrong", 2)
    time.sleep(1.0)
    before = child_versions(kubectl, "wrong")
    kubectl.patch("cc", "wrong", {"spec": {"shards": 3, "weights": {"shard-0": 0}}})

    def degraded() -> dict[str, Any] | None:
        found = condition(kubectl, "wrong", "Degraded")
        return found if found and found["status"] == "True" else None

    found = wait_for(degraded, "a Degraded condition", 30)
    assert "spec.weights.shard-0" in found["message"], found
    warnings = [e for e in events(kubectl, "wrong") if e["type"] == "Warning"]
    assert any("spec.weights.shard-0" in e["message"] for e in warnings), warnings
    time.sleep(2 * 2.0)  # two resyncs: still nothing touched
    assert child_versions(kubectl, "wrong") == before
    assert status(kubectl, "wrong")["shards"] == 2
    # Fixing the spec clears the condition and carries out the change.
    # One patch: the change must not start warming before warm-up is switched off.
    fix = [
        {"op": "remove", "path": "/spec/weights"},
        {"op": "add", "path": "/spec/warmUp/enabled", "value": False},
    ]
    kubectl.patch("cc", "wrong", fix, "json")
    wait_stable(kubectl, "wrong", 3)
    cleared = condition(kubectl, "wrong", "Degraded")
    assert cleared is None or cleared["status"] == "False", cleared


def test_a_child_the_api_refuses_degrades_the_cluster_and_spares_the_others(
    kubectl: Kubectl, operator: Operator
) -> None:
    # Someone else's immutable ConfigMap already holds the name the operator needs.
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "clash-redis"},
            "immutable": True,
            "data": {"redis.conf": "# not ours"},
        }
    )
    kubectl.apply(cache_cluster("clash", 1))
    kubectl.apply(cache_cluster("bystander", 1))

    def failed() -> dict[str, Any] | None:
        found = condition(kubectl, "clash", "Degraded")
        return found if found and found["reason"] == "ReconcileFailed" else None

    found = wait_for(failed, "a ReconcileFailed condition", 30)
    assert found["status"] == "True" and "clash-redis" in found["message"], found
    warnings = [e for e in events(kubectl, "clash") if e["reason"] == "ReconcileFailed"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning", warnings
    wait_stable(kubectl, "bystander", 1)
    assert operator.alive()
    # Once the obstacle is gone, the next retry succeeds and clears the condition.
    kubectl.run("delete", "configmap", "clash-redis")
    wait_stable(kubectl, "clash", 1, timeout=60)
    cleared = condition(kubectl, "clash", "Degraded")
    assert cleared is not None and cleared["status"] == "False", cleared


def test_capacity_change_walks_every_warm_up_phase(
    kubectl: Kubectl, operator: Operator, recorder: list[StatusRecorder]
) -> None:
    operator.set_hit_ratio(0.1, cluster="growing")
    kubectl.apply(cache_cluster("growing", 4))
    first = wait_stable(kubectl, "growing", 4)
    watch = StatusRecorder(kubectl, "growing")
    recorder.append(watch)
    kubectl.run("scale", "cc/growing", "--replicas=5")

    # Ramp complete (100%) but the new shard is cold: it must hold there, not cut over.
    wait_for(
        lambda: (status(kubectl, "growing").get("warmUp") or {}).get("percent") == 100,
        "the shadow ramp to reach 100%",
        30,
    )
    time.sleep(2 * STEP_SECONDS + 1)
    held = status(kubectl, "growing")
    assert held["warmUp"]["phase"] == "Shadowing", held["warmUp"]
    assert held["warmUp"]["addedShards"] == ["shard-4"]
    assert 0.15 < held["warmUp"]["movedFraction"] < 0.25  # ideal: 1/5 of the keys
    config = kubectl.json("get", "configmap", "growing-sidecar")
    assert '\\"shadow\\"' in json.dumps(config["data"]), config["data"]

    operator.set_hit_ratio(0.95, cluster="growing")
    grown = wait_stable(kubectl, "growing", 5, timeout=60)
    time.sleep(0.5)
    # Growing removes no shard, so Finalizing completes within the reconcile that enters it.
    assert watch.phases() == ["Provisioning", "Shadowing", "Grace", "Stable"], watch.seen
    assert watch.percents() == [10.0, 50.0, 100.0], watch.seen
    assert grown["ring"]["version"] == first["ring"]["version"] + 1
    assert "warmUp" not in grown
    assert 15.0 < grown["movedPercent"] < 25.0
    messages = [e["message"] for e in events(kubectl, "growing")]
    assert any("4 → 5 shards: " in m and "% of keys move" in m for m in messages), messages

    # Shrinking back waits in Finalizing until the removed shard's children are gone.
    watch.seen.clear()
    kubectl.run("scale", "cc/growing", "--replicas=4")
    shrunk = wait_stable(kubectl, "growing", 4, timeout=60)
    time.sleep(0.5)
    # No shard to create, but the shards that gain keys are swept for leftovers of earlier
    # rings first: the sweep begins once a reconcile after the planning one has read the
    # sidecars' reports, and is seen done then (this test's file signal has no Redis to scan).
    assert watch.phases() == ["Provisioning", "Shadowing", "Grace", "Finalizing", "Stable"], (
        watch.seen
    )
    assert shrunk["ring"]["version"] == grown["ring"]["version"] + 1
    names = sorted(
        i["metadata"]["name"] for i in children(kubectl, "growing") if i["kind"] == "StatefulSet"
    )
    assert names == sorted(["growing-gutter", *(f"growing-shard-{n}" for n in range(4))]), names


def test_operator_killed_mid_warm_up_resumes_where_it_was(
    kubectl: Kubectl, operator: Operator, recorder: list[StatusRecorder]
) -> None:
    operator.set_hit_ratio(0.0, cluster="resumed")
    kubectl.apply(
        cache_cluster("resumed", 3, warmUp={"steps": [10, 20, 30, 40, 100], "stepSeconds": 2})
    )
    wait_stable(kubectl, "resumed", 3)
    kubectl.run("scale", "cc/resumed", "--replicas=4")

    def shadowing_at(percent: float) -> dict[str, Any] | None:
        warm_up = status(kubectl, "resumed").get("warmUp") or {}
        return (
            warm_up
            if warm_up.get("phase") == "Shadowing" and warm_up.get("percent", 0) >= percent
            else None
        )

    before = wait_for(lambda: shadowing_at(20), "shadowing at 20%", 30)
    operator.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    frozen = status(kubectl, "resumed")["warmUp"]
    time.sleep(3)  # the warm-up must not move while nobody drives it
    assert status(kubectl, "resumed")["warmUp"] == frozen

    operator.start()
    resumed = wait_for(
        lambda: shadowing_at(frozen["percent"] + 1), "the ramp to go on after restart", 30
    )
    assert time.monotonic() - killed_at < 30
    # Same change, same plan: nothing restarted from scratch, the ring is the one planned.
    for key in ("startedAt", "fromRing", "toRing", "addedShards", "movedFraction"):
        assert resumed[key] == before[key], key
    assert resumed["step"] > frozen["step"]

    operator.set_hit_ratio(0.95, cluster="resumed")
    final = wait_stable(kubectl, "resumed", 4, timeout=60)
    assert final["ring"]["assignment"] == before["toRing"]["assignment"]


def test_deleting_the_cluster_removes_every_child(kubectl: Kubectl, operator: Operator) -> None:
    kubectl.apply(cache_cluster("doomed", 2))
    wait_stable(kubectl, "doomed", 2)
    assert children(kubectl, "doomed")
    kubectl.run("delete", "cc", "doomed", "--wait=false")
    wait_for(lambda: kubectl.get("cc", "doomed") is None, "the CacheCluster to go", 30)
    wait_for(
        lambda: not children(kubectl, "doomed"),
        "garbage collection of every child",
        GC_TIMEOUT,
        interval=2,
    )
    pods = kubectl.json("get", "pods", "-l", f"{CLUSTER_LABEL}=doomed")["items"]
    wait_for(
        lambda: not kubectl.json("get", "pods", "-l", f"{CLUSTER_LABEL}=doomed")["items"],
        f"pods of doomed to go ({len(pods)} left)",
        GC_TIMEOUT,
        interval=2,
    )


def test_operator_did_not_crash(operator: Operator) -> None:
    assert operator.alive(), operator.tail()
    assert "Traceback" not in operator.log_text(), operator.tail()
