"""Rendering charts/cachefleet offline with helm-python-sdk (Helm's own Go code, no binary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cachefleet"
EXAMPLE_VALUES = sorted((CHART / "examples").glob("*.yaml"))


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = "cachefleet",
    namespace: str = "cachefleet-system",
) -> dict[str, str]:
    """Template path → rendered text, as `helm template` would produce."""
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(values or {})
        return chart.render(values or {}, name=release, namespace=namespace, is_install=True)


def manifests(values: dict[str, Any] | None = None, **where: str) -> list[dict[str, Any]]:
    """Every rendered object (NOTES.txt and empty documents left out)."""
    found = []
    for path, text in sorted(render(values, **where).items()):
        if path.endswith(".txt"):
            continue
        found += [doc for doc in yaml.safe_load_all(text) if doc]
    return found


def example(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded
