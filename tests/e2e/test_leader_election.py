"""Two operator processes against one API server: only the Lease holder writes, and when it
dies the other takes over within the lease duration. Writes are counted by the API server
(its audit log, by each process's user agent), not by the processes themselves."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Installed
from tests.e2e.harness import AuditLog, Kubectl, Operator, create_namespace, wait_for
from tests.e2e.test_operator import cache_cluster, wait_stable

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 6.0
TIMING = ("--lease-seconds", "6", "--renew-deadline", "4", "--retry-seconds", "1")


@pytest.fixture
def pair(
    kubeconfig: Path, tmp_path: Path, audit: AuditLog | None, chart: Installed
) -> Iterator[tuple[Kubectl, Operator, Operator]]:
    """Two replicas with the admin's credentials in a namespace of their own (the chart's
    CRD installed), both watching it, their Lease there too."""
    if audit is None:
        pytest.skip("needs the local control plane's audit log (KUBECONFIG is set)")
    admin = Kubectl(kubeconfig)
    namespace = create_namespace(admin, "cachefleet-leader")
    made = []
    for identity in ("replica-a", "replica-b"):
        operator = Operator(
            kubeconfig=kubeconfig,
            namespace=namespace,
            signal_file=tmp_path / "signal.json",
            log=tmp_path / f"{identity}.log",
            identity=identity,
            extra_args=TIMING,
        )
        operator.start()
        made.append(operator)
    try:
        yield Kubectl(kubeconfig, namespace), made[0], made[1]
    finally:
        for operator in made:
            with contextlib.suppress(Exception):
                operator.stop()
        admin.run("delete", "namespace", namespace, "--wait=false", check=False, namespaced=False)


def holder(kubectl: Kubectl) -> str | None:
    lease = kubectl.get("lease", "cachefleet-operator")
    return (lease or {}).get("spec", {}).get("holderIdentity") or None


def test_only_the_leader_writes_and_the_other_takes_over_when_it_dies(
    pair: tuple[Kubectl, Operator, Operator], audit: AuditLog
) -> None:
    kubectl, first, second = pair
    leader_name = wait_for(lambda: holder(kubectl), "a Lease holder", 30)
    leader, follower = (first, second) if leader_name == first.identity else (second, first)
    # From here on: the first Lease was created (both may have tried; one got 409).
    time.sleep(1.5)
    start = audit.offset()
    kubectl.apply(cache_cluster("led", 2, warmUp={"enabled": False}))
    wait_stable(kubectl, "led", 2)
    kubectl.run("scale", "cc/led", "--replicas=3")
    wait_stable(kubectl, "led", 3)
    time.sleep(3.0)  # a few renewals and resyncs more

    leader_writes = audit.by(leader, start)
    follower_writes = audit.by(follower, start)
    assert follower_writes == [], follower_writes
    children = [w for w in leader_writes if w.resource not in ("leases",)]
    assert children, "the leader wrote no child"
    assert any(w.resource == "leases" and w.verb == "update" for w in leader_writes)
    # Both saw every event: the follower's log knows the cluster it never reconciled.
    assert "reconciled " not in follower.log_text()

    before_kill = audit.offset()
    leader.kill(signal.SIGKILL)
    killed = time.time()

    def took_over() -> float | None:
        taken = [
            w for w in audit.by(follower, before_kill) if w.resource == "leases" and w.code == 200
        ]
        return taken[0].at if taken else None

    taken_at = wait_for(took_over, "the follower to take the Lease", 4 * LEASE_SECONDS)
    takeover = taken_at - killed
    print(f"takeover {takeover:.2f}s after SIGKILL (lease {LEASE_SECONDS:g}s)")
    # It waits for the Lease to expire: at most the lease duration after the last renewal,
    # which was at most one retry period before the kill (the slack: 2 busy cores).
    assert takeover <= LEASE_SECONDS + 0.5, takeover
    assert holder(kubectl) == follower.identity
    # The new leader acts: a change made now is carried out by it.
    kubectl.run("scale", "cc/led", "--replicas=2")
    wait_stable(kubectl, "led", 2, timeout=60)
    assert [w for w in audit.by(follower, before_kill) if w.resource == "statefulsets"]


def test_a_leader_that_stops_cleanly_hands_over_at_once(
    pair: tuple[Kubectl, Operator, Operator], audit: AuditLog
) -> None:
    kubectl, first, second = pair
    leader_name = wait_for(lambda: holder(kubectl), "a Lease holder", 30)
    leader, follower = (first, second) if leader_name == first.identity else (second, first)
    leader.stop()  # SIGTERM: gives the Lease up
    stopped = time.monotonic()
    wait_for(lambda: holder(kubectl) == follower.identity, "the hand-over", LEASE_SECONDS)
    assert time.monotonic() - stopped < LEASE_SECONDS / 2
