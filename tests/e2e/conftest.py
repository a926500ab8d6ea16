"""Session fixtures: a Kubernetes API, the Helm chart installed in it, a namespace, and the
operator running under the chart's ServiceAccount token (so a missing RBAC rule fails here)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import (
    AuditLog,
    Kubectl,
    Operator,
    audit_log,
    control_plane,
    create_namespace,
    install_chart,
    running_operator,
    service_account_kubeconfig,
)
from tests.support.ports import free_port

# Short enough that a resync-based check takes seconds, long enough not to busy the 2 cores.
RESYNC_SECONDS = 2.0
# The chart's ServiceAccount (release "cachefleet").
SERVICE_ACCOUNT = "cachefleet"


@dataclass(frozen=True)
class Installed:
    """The chart as installed for the session."""

    release_namespace: str
    webhook_port: int
    service_account_kubeconfig: Path


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    with control_plane() as path:
        yield path


@pytest.fixture(scope="session")
def audit(kubeconfig: Path) -> AuditLog | None:
    return audit_log(kubeconfig)


@pytest.fixture(scope="session")
def installed(
    kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Installed, str]]:
    """The rendered chart applied (CRD, RBAC, webhook), watching one fresh namespace."""
    admin = Kubectl(kubeconfig)
    namespace = f"cachefleet-e2e-{uuid.uuid4().hex[:6]}"
    release = f"cachefleet-system-{uuid.uuid4().hex[:6]}"
    port = free_port()
    values = {
        "replicas": 1,
        "watch": {"namespaces": [namespace]},
        # The operator runs here as a process, not a pod: the API server calls it on loopback.
        "webhook": {"url": f"https://127.0.0.1:{port}/mutate-pods"},
    }
    admin.run("create", "namespace", namespace, namespaced=False)
    install_chart(admin, release, values)
    for name in (namespace, release):
        create_namespace(admin, existing=name)  # waits for its default ServiceAccount
    directory = tmp_path_factory.mktemp("service-account")
    token = service_account_kubeconfig(admin, release, SERVICE_ACCOUNT, directory / "kubeconfig")
    yield Installed(release, port, token), namespace
    for name in (namespace, release):
        admin.run("delete", "namespace", name, "--wait=false", check=False, namespaced=False)


@pytest.fixture(scope="session")
def namespace(installed: tuple[Installed, str]) -> str:
    return installed[1]


@pytest.fixture(scope="session")
def chart(installed: tuple[Installed, str]) -> Installed:
    return installed[0]


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path, namespace: str) -> Kubectl:
    return Kubectl(kubeconfig, namespace)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing e2e test shows what the operator was saying."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    operator = getattr(item, "funcargs", {}).get("operator")
    if report.when == "call" and report.failed and isinstance(operator, Operator):
        report.sections.append(("operator log (tail)", operator.tail()))


@pytest.fixture(scope="session")
def operator(
    chart: Installed, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    # pytest keeps the last runs' temporary directories: the whole log stays for post-mortems.
    directory = tmp_path_factory.mktemp("operator")
    with running_operator(
        chart.service_account_kubeconfig,
        namespace,
        directory,
        resync_seconds=RESYNC_SECONDS,
        operator_namespace=chart.release_namespace,
        webhook_port=chart.webhook_port,
        identity="session-operator",
    ) as running:
        running.set_hit_ratio(0.0)
        yield running
        if not running.alive():
            pytest.fail(f"the operator died during the session:\n{running.tail()}")
