"""The generated password Secret: created once, never updated, so the password never changes."""

from __future__ import annotations

import secrets

from cachefleet_operator.children.context import PASSWORD_KEY, RenderContext
from cachefleet_operator.labels import metadata
from cachefleet_operator.naming import auth_secret
from cachefleet_operator.plan import Manifest

# Random bytes in a generated password (32 URL-safe characters).
PASSWORD_BYTES = 24


def new_password() -> str:
    """A fresh password for the generated Secret; used only when that Secret does not exist."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def generated_secret(context: RenderContext, password: str) -> Manifest | None:
    """The Secret to create when absent, or None when the user brings one (or auth is off)."""
    auth = context.spec.auth
    if not auth.enabled or auth.existing_secret is not None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(context.owner, auth_secret(context.name), "auth"),
        "stringData": {PASSWORD_KEY: password},
    }
