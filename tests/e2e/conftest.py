"""Session fixtures: a Kubernetes API, the CRD, a namespace and the operator watching it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Kubectl,
    Operator,
    control_plane,
    create_namespace,
    install_crd,
    running_operator,
)

# Short enough that a resync-based check takes seconds, long enough not to busy the 2 cores.
RESYNC_SECONDS = 2.0


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    with control_plane() as path:
        yield path


@pytest.fixture(scope="session")
def namespace(kubeconfig: Path) -> Iterator[str]:
    admin = Kubectl(kubeconfig)
    install_crd(admin)
    name = create_namespace(admin)
    yield name
    admin.run("delete", "namespace", name, "--wait=false", check=False, namespaced=False)


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
    kubeconfig: Path, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    # pytest keeps the last runs' temporary directories: the whole log stays for post-mortems.
    directory = tmp_path_factory.mktemp("operator")
    with running_operator(
        kubeconfig, namespace, directory, resync_seconds=RESYNC_SECONDS
    ) as running:
        running.set_hit_ratio(0.0)
        yield running
        if not running.alive():
            pytest.fail(f"the operator died during the session:\n{running.tail()}")
