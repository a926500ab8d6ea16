"""Keeping the webhook's TLS current: the Secret, the served certificate and the caBundle.

- Every replica loads the serving certificate from the Secret and reloads it when it changes
  (``SSLContext.load_cert_chain`` again: new handshakes get the new certificate).
- The leader, in ``operator`` mode (the default), creates the CA and serving certificate,
  renews them before they expire (``certificates.ensure``) and keeps ``caBundle`` of the
  webhook configuration equal to the Secret's bundle. The bundle is patched before the Secret
  is written, so no replica serves a certificate the API server does not trust yet.
- In ``cert-manager`` mode cert-manager writes the Secret and its CA injector the caBundle:
  the operator only serves what the Secret holds.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cachefleet_operator.kube import Kube, KubeError
from cachefleet_operator.labels import MANAGED_BY, MANAGER
from cachefleet_operator.webhook.certificates import WebhookCertificates, ensure

logger = logging.getLogger("cachefleet.operator.webhook")

CertSource = Literal["operator", "cert-manager"]


def ca_bundle_patch(configuration: dict[str, Any], bundle: bytes) -> list[dict[str, Any]]:
    """JSON patch setting every webhook's caBundle to ``bundle``; [] when all already match.

    Each replacement is guarded by a ``test`` of the webhook's name at that index, so a
    configuration changed meanwhile makes the patch fail instead of writing the wrong entry.
    """
    encoded = base64.b64encode(bundle).decode()
    patch: list[dict[str, Any]] = []
    for index, webhook in enumerate(configuration.get("webhooks") or []):
        if (webhook.get("clientConfig") or {}).get("caBundle") == encoded:
            continue
        patch.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook["name"]})
        patch.append(
            {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
        )
    return patch


def _decoded(secret: dict[str, Any] | None) -> dict[str, bytes]:
    data = (secret or {}).get("data") or {}
    return {key: base64.b64decode(value) for key, value in data.items()}


@dataclass
class TlsKeeper:
    kube: Kube
    namespace: str
    secret_name: str
    configuration_name: str
    hosts: list[str]
    source: CertSource = "operator"
    context: ssl.SSLContext = field(default_factory=lambda: ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    loaded: bytes = b""
    _directory: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="cachefleet-tls-"))

    def refresh(self) -> bool:
        """Load the Secret's serving certificate if it changed; True once one is loaded."""
        data = _decoded(self.kube.get_secret(self.namespace, self.secret_name))
        certificate, key = data.get("tls.crt"), data.get("tls.key")
        if not certificate or not key:
            return bool(self.loaded)
        if certificate != self.loaded:
            self._load(certificate, key)
            logger.info(
                "webhook: serving the certificate from %s/%s", self.namespace, self.secret_name
            )
        return True

    def _load(self, certificate: bytes, key: bytes) -> None:
        # load_cert_chain wants files: a private directory (0700) on the pod's /tmp volume.
        cert_path = os.path.join(self._directory, "tls.crt")
        key_path = os.path.join(self._directory, "tls.key")
        for path, content in ((cert_path, certificate), (key_path, key)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
        self.context.load_cert_chain(cert_path, key_path)
        self.loaded = certificate

    def maintain(self, now: datetime | None = None) -> bool:
        """Leader only: make or renew the certificates and the caBundle. True if it wrote."""
        if self.source != "operator":
            return False
        now = now or datetime.now(UTC)
        secret = self.kube.get_secret(self.namespace, self.secret_name)
        current = WebhookCertificates.from_secret_data(_decoded(secret))
        wanted = ensure(current, self.hosts, now)
        wrote = self._update_bundle(wanted.bundle)
        if wanted != current:
            self.kube.write_secret(self.namespace, self._secret(wanted, secret))
            logger.info(
                "webhook: %s certificates in %s/%s",
                "renewed" if current else "created",
                self.namespace,
                self.secret_name,
            )
            wrote = True
        return wrote

    def _update_bundle(self, bundle: bytes) -> bool:
        configuration = self.kube.get_webhook_configuration(self.configuration_name)
        if configuration is None:
            logger.warning(
                "webhook: MutatingWebhookConfiguration %s not found; nothing calls the webhook",
                self.configuration_name,
            )
            return False
        patch = ca_bundle_patch(configuration, bundle)
        if not patch:
            return False
        self.kube.patch_webhook_configuration(self.configuration_name, patch)
        logger.info("webhook: caBundle of %s updated", self.configuration_name)
        return True

    def _secret(self, wanted: WebhookCertificates, live: dict[str, Any] | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.secret_name,
            "namespace": self.namespace,
            "labels": {MANAGED_BY: MANAGER},
        }
        if live is not None:
            metadata["resourceVersion"] = live["metadata"]["resourceVersion"]
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": metadata,
            "data": {
                key: base64.b64encode(value).decode()
                for key, value in wanted.to_secret_data().items()
            },
        }


def safely(action: str, step: Any) -> Any:
    """Run ``step()``, logging an API failure instead of raising (the next round retries)."""
    try:
        return step()
    except KubeError as error:
        logger.warning("webhook: %s: %s", action, error)
        return None
