"""Kubernetes' own JSON schemas (kubernetes-validate), strict: unknown fields are errors."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

# The oldest and newest Kubernetes whose schemas kubernetes-validate ships: the range the chart
# and the operator's manifests are checked against (the e2e suite adds a real 1.20 server).
OLDEST = "1.25.0"
NEWEST = "1.37.0"
SUPPORTED = (OLDEST, NEWEST)
# Kinds of other projects' CRDs, which no Kubernetes schema describes.
FOREIGN_KINDS = frozenset({("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")})


def problems(manifest: dict[str, Any], versions: tuple[str, ...] = SUPPORTED) -> list[str]:
    """One line per schema violation of ``manifest`` in each of ``versions``."""
    found = []
    kind = f"{manifest.get('kind')}/{(manifest.get('metadata') or {}).get('name')}"
    for version in versions:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            found.append(f"{version} {kind} {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            found.append(f"{version} {kind}: no schema for {manifest.get('apiVersion')}")
    return found
