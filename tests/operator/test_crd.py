"""The generated CRD: committed and current, structural, and validating what it should."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
import yaml
from cachefleet_operator.api.reference import spec_reference
from cachefleet_operator.crd import CRD_PATH, crd_yaml, render_crd

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "const", "title", "default"}


def test_the_committed_crd_is_current() -> None:
    committed = (ROOT / CRD_PATH).read_text()
    assert committed == crd_yaml(), (
        f"{CRD_PATH} is stale: run `cachefleet crd > {CRD_PATH}` and commit it"
    )


@pytest.mark.parametrize("document", ["docs/operator.md", "README.md"])
def test_the_field_reference_in_the_docs_is_current(document: str) -> None:
    assert spec_reference() in (ROOT / document).read_text(), (
        f"{document}'s spec reference is stale: run .venv/bin/python -c "
        f"\"from cachefleet_operator.api.reference import update; update('{document}')\""
    )


def test_the_crd_is_a_valid_customresourcedefinition() -> None:
    kubernetes_validate.validate(render_crd(), "1.25.0", strict=True)


def _nodes(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, sub in (schema.get("properties") or {}).items():
        found += _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _nodes(schema["additionalProperties"], f"{path}{{}}")
    return found


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_the_schema_is_structural() -> None:
    for path, node in _nodes(_schema()):
        assert not FORBIDDEN & node.keys(), f"{path or '<root>'}: {FORBIDDEN & node.keys()}"
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{path}: no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        # The API server reads `additionalProperties: true` as an empty schema and prunes
        # everything below it (seen on 1.20 with status.appliedSpec).
        assert not isinstance(node.get("additionalProperties"), bool), path
        if node.get("type") == "object" and path.startswith(".spec") and path[-1] not in "]}":
            assert "description" in node or path == ".spec", f"{path}: undocumented"
    spec = _schema()["properties"]["spec"]
    assert spec["required"] == ["shards"]
    for name, field in spec["properties"].items():
        assert field.get("description"), f"spec.{name} has no description"


def test_status_keeps_unknown_fields_and_declares_its_own() -> None:
    status = _schema()["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    for field in ("phase", "shards", "readyShards", "ring", "warmUp", "conditions"):
        assert field in status["properties"]
    applied = status["properties"]["appliedSpec"]
    assert applied["x-kubernetes-preserve-unknown-fields"] is True


def test_subresources_and_printer_columns() -> None:
    version = render_crd()["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.shards",
        "statusReplicasPath": ".status.shards",
    }
    assert version["subresources"]["status"] == {}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Shards", "Ready", "Phase", "Warm-up %", "Moved %", "Age"]
    names = render_crd()["spec"]["names"]
    assert names["shortNames"] == ["cc"] and names["kind"] == "CacheCluster"


@pytest.mark.parametrize(("name", "valid"), [("cache", True), ("a.b", False), ("x" * 40, False)])
def test_the_api_server_checks_the_name(name: str, valid: bool) -> None:
    metadata = jsonschema.Draft4Validator(_schema()["properties"]["metadata"])
    assert metadata.is_valid({"name": name}) is valid


def _validator() -> jsonschema.Draft4Validator:
    # OpenAPI v3.0's numeric keywords are JSON Schema draft 4's (boolean exclusiveMinimum).
    return jsonschema.Draft4Validator(_schema()["properties"]["spec"])


def test_every_example_validates() -> None:
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "CacheCluster":
                errors = [e.message for e in _validator().iter_errors(document["spec"])]
                assert errors == [], f"{path.name}: {errors}"


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"shards": 0},
        {"shards": 2.5},
        {"shards": 3, "redis": {"evictionPolicy": "most-recently-loved"}},
        {"shards": 3, "redis": {"maxmemory": "a lot"}},
        {"shards": 3, "ring": {"strategy": "random"}},
        {"shards": 3, "ring": {"tokensPerShard": 0}},
        {"shards": 3, "warmUp": {"steps": [0, 50]}},
        {"shards": 3, "warmUp": {"cutoverHitRatio": 1.5}},
        {"shards": 3, "weights": {"shard-0": "heavy"}},
        {"shards": 3, "replicasPerShard": -1},
        {"shards": 3, "scheduling": {"whenUnsatisfiable": "Sometimes"}},
    ],
)
def test_the_api_server_schema_refuses_bad_values(spec: dict[str, Any]) -> None:
    assert list(_validator().iter_errors(spec)), f"{spec} passed the schema"
