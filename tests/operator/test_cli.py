"""``cachefleet operator`` and ``cachefleet crd`` as a user runs them (no cluster needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cachefleet_operator import cli

from tests.e2e.harness import CACHEFLEET, CRD_DIR

CHEAP_IMPORT = """
import sys
from cachefleet.cli import build_parser
build_parser()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"kopf", "kubernetes", "redis"})
print(",".join(heavy))
"""


def _cachefleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CACHEFLEET), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_registering_the_operator_commands_imports_neither_kopf_nor_the_client() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHEAP_IMPORT], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_crd_prints_the_committed_crd() -> None:
    result = _cachefleet("crd")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (CRD_DIR / "cacheclusters.cachefleet.io.yaml").read_text()


def test_operator_refuses_bad_options_with_a_clear_message() -> None:
    cases = {
        ("--warmup-signal", "prometheus"): "--warmup-signal must be 'redis' or 'file:PATH'",
        ("--kubeconfig", "/nonexistent/kubeconfig"): "/nonexistent/kubeconfig: no such file",
        ("--resync-seconds", "0"): "--resync-seconds must be positive",
        ("--workers", "0"): "--workers must be at least 1",
    }
    for args, message in cases.items():
        result = _cachefleet("operator", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    both = _cachefleet("operator", "--namespace", "a", "--all-namespaces")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_the_operator_lives_in_its_pods_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    account = tmp_path / "namespace"
    monkeypatch.setattr(cli, "_IN_CLUSTER_NAMESPACE", str(account))
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert cli._own_namespace() is None  # outside a pod: the caller picks
    account.write_text("cache-ops\n")
    assert cli._own_namespace() == "cache-ops"
    monkeypatch.setenv("POD_NAMESPACE", "from-the-chart")
    assert cli._own_namespace() == "from-the-chart"
