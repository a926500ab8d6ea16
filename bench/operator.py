"""Operator benchmark against a real kube-apiserver (the e2e control plane, or $KUBECONFIG).

Measures, with ``cachefleet operator`` running as its own process:
- time from ``kubectl apply`` of a CacheCluster to every child existing, for 1, 16 and 64 shards;
- API requests of the reconcile that creates the children, and of an idle resync, per size
  (from the operator's own per-reconcile log line, which counts every request it makes);
- write requests on idle resyncs across all clusters (target 0);
- the operator's resident memory with 50 CacheClusters.

Prints one JSON line, then a one-line summary. Run: ``.venv/bin/python bench/operator.py``.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the e2e harness lives in tests/

from tests.e2e.harness import (  # noqa: E402
    Kubectl,
    Operator,
    control_plane,
    create_namespace,
    install_crd,
    running_operator,
    wait_for,
)
from tests.support.processes import rss_kib  # noqa: E402

RECONCILED = re.compile(
    r"reconciled (?P<ns>[^/\s]+)/(?P<name>\S+) in (?P<seconds>[0-9.]+)s: "
    r"requests=(?P<requests>\{[^}]*\}) writes=(?P<writes>\d+)"
)
CHILD_KINDS = "statefulsets,services,configmaps,secrets,poddisruptionbudgets"
IDLE_TARGET = 0
RESYNC_SECONDS = 3.0


def cache_cluster(name: str, shards: int) -> dict[str, Any]:
    return {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "CacheCluster",
        "metadata": {"name": name},
        "spec": {"shards": shards},
    }


def reconciles(operator: Operator, name: str) -> list[dict[str, Any]]:
    found = []
    for match in RECONCILED.finditer(operator.log_text()):
        if match["name"] == name and match["ns"] == operator.namespace:
            requests: dict[str, int] = ast.literal_eval(match["requests"])
            found.append(
                {
                    "seconds": float(match["seconds"]),
                    "requests": sum(requests.values()),
                    "by_verb": requests,
                    "writes": int(match["writes"]),
                }
            )
    return found


def children_complete(kubectl: Kubectl, name: str, shards: int) -> bool:
    """Every child exists: one StatefulSet and Service per shard and for the gutter, both
    ConfigMaps, the Secret and both PodDisruptionBudgets."""
    items = kubectl.json("get", CHILD_KINDS, "-l", f"cachefleet.io/cluster={name}")["items"]
    kinds = [item["kind"] for item in items]
    return (
        kinds.count("StatefulSet") == shards + 1
        and kinds.count("Service") == shards + 1
        and kinds.count("ConfigMap") == 2
        and kinds.count("Secret") == 1
        and kinds.count("PodDisruptionBudget") == 2
    )


def settled(kubectl: Kubectl, name: str) -> bool:
    body = kubectl.get("cc", name)
    if body is None:
        return False
    status = body.get("status") or {}
    return bool(
        status.get("phase") == "Stable"
        and status.get("observedGeneration") == body["metadata"]["generation"]
    )


def measure_size(
    kubectl: Kubectl, operator: Operator, shards: int, name: str | None = None
) -> dict[str, Any]:
    name = name or f"bench-{shards}"
    started = time.monotonic()
    kubectl.apply(cache_cluster(name, shards))
    wait_for(
        lambda: children_complete(kubectl, name, shards),
        f"children of {name}",
        timeout=120,
        interval=0.05,
    )
    created_after = time.monotonic() - started
    wait_for(lambda: settled(kubectl, name), f"{name} Stable", timeout=60)
    # Two resyncs with nothing changed.
    wait_for(lambda: len(reconciles(operator, name)) >= 3, f"idle resyncs of {name}", 30)
    runs = reconciles(operator, name)
    return {
        "shards": shards,
        "apply_to_children_s": round(created_after, 3),
        "first_reconcile": runs[0],
        "idle_reconcile": runs[-1],
    }


def measure_memory(kubectl: Kubectl, operator: Operator, clusters: int) -> dict[str, Any]:
    before = rss_kib(operator.pid)
    names = [f"mem-{i}" for i in range(clusters)]
    started = time.monotonic()
    for name in names:
        kubectl.apply(cache_cluster(name, 3))

    def all_settled() -> bool:
        items = kubectl.json("get", "cc")["items"]
        stable = {
            item["metadata"]["name"]
            for item in items
            if (item.get("status") or {}).get("phase") == "Stable"
            and item["status"].get("observedGeneration") == item["metadata"]["generation"]
        }
        return stable.issuperset(names)

    wait_for(
        all_settled,
        f"{clusters} CacheClusters Stable",
        timeout=600,
        interval=1.0,
    )
    all_settled = time.monotonic() - started
    # Let every cluster go through idle resyncs before reading memory and write counts.
    mark = len(operator.log_text())
    time.sleep(2 * RESYNC_SECONDS + 1)
    idle_writes = [
        int(m["writes"])
        for m in RECONCILED.finditer(operator.log_text()[mark:])
        if m["name"].startswith("mem-")
    ]
    return {
        "clusters": clusters,
        "rss_before_mib": round(before / 1024, 1),
        "rss_mib": round(rss_kib(operator.pid) / 1024, 1),
        "all_stable_s": round(all_settled, 1),
        "idle_reconciles": len(idle_writes),
        "idle_writes": sum(idle_writes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16,64", help="shard counts (default 1,16,64)")
    parser.add_argument("--clusters", type=int, default=50, help="CacheClusters for memory")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with control_plane() as kubeconfig, tempfile.TemporaryDirectory() as directory:
        admin = Kubectl(kubeconfig)
        install_crd(admin)
        namespace = create_namespace(admin, "cachefleet-bench")
        kubectl = Kubectl(kubeconfig, namespace)
        try:
            with running_operator(
                kubeconfig, namespace, Path(directory), resync_seconds=RESYNC_SECONDS
            ) as operator:
                wait_for(
                    lambda: "Initial authentication has finished" in operator.log_text(),
                    "the operator to start",
                    60,
                )
                # The first CacheCluster also pays for connections, discovery and the API
                # server's first StatefulSets: reported apart, so the sizes compare fairly.
                cold = measure_size(kubectl, operator, 1, name="bench-cold")
                per_size = [measure_size(kubectl, operator, n) for n in sizes]
                memory = measure_memory(kubectl, operator, args.clusters)
        finally:
            admin.run(
                "delete", "namespace", namespace, "--wait=false", check=False, namespaced=False
            )

    idle_writes = sum(s["idle_reconcile"]["writes"] for s in per_size) + memory["idle_writes"]
    result = {
        "bench": "operator",
        "cold_first_apply_to_children_s": cold["apply_to_children_s"],
        "sizes": per_size,
        "idle_resync_writes": idle_writes,
        "idle_resync_writes_target": IDLE_TARGET,
        "memory": memory,
    }
    print(json.dumps(result))
    parts = [
        f"{s['shards']} shards: children in {s['apply_to_children_s']:.2f}s, "
        f"{s['first_reconcile']['requests']} requests to create, "
        f"{s['idle_reconcile']['requests']} per idle resync"
        for s in per_size
    ]
    verdict = "OK" if idle_writes <= IDLE_TARGET else "ABOVE TARGET"
    print(
        "operator: " + "; ".join(parts) + f"; idle-resync writes {idle_writes} "
        f"(target {IDLE_TARGET}, {verdict}); RSS {memory['rss_mib']} MiB with "
        f"{memory['clusters']} CacheClusters (started at {memory['rss_before_mib']} MiB)"
    )
    return 0 if idle_writes <= IDLE_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
