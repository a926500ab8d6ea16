"""A stable hash of a manifest, stamped on it so an idle resync can skip the write."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from cachefleet_operator.plan import APPLIED_HASH_ANNOTATION, Manifest


def content_hash(value: Any, length: int = 16) -> str:
    """Hash of canonical JSON (sorted keys, no spaces): equal content, equal hash."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def stamped(manifest: Manifest) -> Manifest:
    """A copy of ``manifest`` carrying the hash of its own content (without the stamp)."""
    result = copy.deepcopy(manifest)
    annotations = result.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(APPLIED_HASH_ANNOTATION, None)
    annotations[APPLIED_HASH_ANNOTATION] = content_hash(result)
    return result


def applied_hash(manifest: Manifest | None) -> str | None:
    if manifest is None:
        return None
    annotations = (manifest.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(APPLIED_HASH_ANNOTATION)
    return value if isinstance(value, str) else None
