"""The CacheCluster CRD, generated from the pydantic models (``cachefleet crd``).

pydantic writes JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema:
every node typed, no ``$ref``, no ``anyOf`` of types, no ``const``/``title``, boolean
``exclusiveMinimum``. ``structural()`` rewrites one into the other. Defaults are left out of the
schema on purpose: the operator applies them, so a stored object stays what the user wrote and
a later default change reaches existing clusters; each description states its default.
"""

from __future__ import annotations

from typing import Any

import yaml

from cachefleet_operator.api import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    CacheClusterSpec,
    CacheClusterStatus,
)
from cachefleet_operator.naming import CLUSTER_NAME_PATTERN, MAX_CLUSTER_NAME

CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_PATH = f"crds/{CRD_NAME}.yaml"
_DROPPED = frozenset({"title", "default", "examples", "$defs"})


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$ref``s and rewrite JSON Schema into Kubernetes' structural OpenAPI subset."""
    definitions = schema.get("$defs", {})

    def convert(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return convert(merged)
        if "allOf" in node and len(node["allOf"]) == 1:
            rest = {k: v for k, v in node.items() if k != "allOf"}
            return convert({**node["allOf"][0], **rest})
        if "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            nullable = len(options) < len(node["anyOf"])
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if len(options) == 1:
                single = convert({**options[0], **rest})
                if nullable:
                    single["nullable"] = True
                return single
            if all(o.get("type") in ("integer", "string") for o in options):
                return convert({**rest, "x-kubernetes-int-or-string": True})
            raise ValueError(f"cannot express anyOf {options} structurally")
        result: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED:
                continue
            if key == "const":
                result["enum"] = [value]
            elif key == "properties":
                result["properties"] = {name: convert(sub) for name, sub in value.items()}
            elif key == "items":
                result["items"] = convert(value)
            elif key == "additionalProperties":
                result[key] = convert(value) if isinstance(value, dict) else value
            elif key == "exclusiveMinimum":
                result["minimum"] = value
                result["exclusiveMinimum"] = True
            elif key == "exclusiveMaximum":
                result["maximum"] = value
                result["exclusiveMaximum"] = True
            else:
                result[key] = value
        if isinstance(result.get("additionalProperties"), bool):
            # false: pruning already drops unknown fields. true: means "anything", which the
            # API server reads as an empty schema and prunes everything below it; free-form
            # maps say x-kubernetes-preserve-unknown-fields instead.
            del result["additionalProperties"]
        if "type" not in result and "x-kubernetes-int-or-string" not in result:
            objectish = (
                "properties",
                "additionalProperties",
                "x-kubernetes-preserve-unknown-fields",
            )
            if any(key in result for key in objectish):
                result["type"] = "object"
            elif "enum" in result:
                result["type"] = "string"
        return result

    return convert({k: v for k, v in schema.items() if k != "$defs"})


def spec_schema() -> dict[str, Any]:
    return structural(CacheClusterSpec.model_json_schema(by_alias=True, mode="validation"))


def status_schema() -> dict[str, Any]:
    schema = structural(CacheClusterStatus.model_json_schema(by_alias=True, mode="validation"))
    # Known fields are validated; anything else (kopf's own bookkeeping) is kept, not pruned.
    schema["x-kubernetes-preserve-unknown-fields"] = True
    return schema


def _column(name: str, path: str, type_: str, description: str) -> dict[str, str]:
    return {"name": name, "type": type_, "jsonPath": path, "description": description}


def render_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["cachefleet"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A sharded Redis cache fleet routed by a "
                            "consistent-hash ring, managed by the cachefleet operator.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                # The only metadata a CRD may constrain: the name, which
                                # becomes part of every child's name.
                                "metadata": {
                                    "type": "object",
                                    "properties": {
                                        "name": {
                                            "type": "string",
                                            "maxLength": MAX_CLUSTER_NAME,
                                            "pattern": CLUSTER_NAME_PATTERN,
                                        }
                                    },
                                },
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.shards",
                            "statusReplicasPath": ".status.shards",
                        },
                    },
                    "additionalPrinterColumns": [
                        _column("Shards", ".spec.shards", "integer", "Shards asked for"),
                        _column("Ready", ".status.readyShards", "integer", "Shards ready"),
                        _column("Phase", ".status.phase", "string", "Stable or warm-up phase"),
                        _column("Warm-up %", ".status.warmUp.percent", "number", "Shadowed share"),
                        _column(
                            "Moved %", ".status.movedPercent", "number", "Keys the change moves"
                        ),
                        _column("Age", ".metadata.creationTimestamp", "date", "Age"),
                    ],
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = (
        "# Generated from cachefleet_operator.api by `cachefleet crd`; do not edit.\n"
        f"# Regenerate: cachefleet crd > {CRD_PATH}\n"
    )
    return header + yaml.safe_dump(render_crd(), sort_keys=False, width=100)
