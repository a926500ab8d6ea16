"""What every child renderer needs: who owns it and the (valid) spec."""

from __future__ import annotations

from dataclasses import dataclass

from cachefleet_operator.api import CacheClusterSpec
from cachefleet_operator.labels import Owner
from cachefleet_operator.naming import auth_secret

PASSWORD_KEY = "password"
REDIS_PORT = 6379


@dataclass(frozen=True)
class RenderContext:
    owner: Owner
    spec: CacheClusterSpec

    @property
    def name(self) -> str:
        return self.owner.name

    @property
    def namespace(self) -> str:
        return self.owner.namespace

    def password_secret(self) -> tuple[str, str] | None:
        """(Secret name, key) of the shards' password, or None without auth."""
        auth = self.spec.auth
        if not auth.enabled:
            return None
        if auth.existing_secret is not None:
            return auth.existing_secret.name, auth.existing_secret.key
        return auth_secret(self.name), PASSWORD_KEY
