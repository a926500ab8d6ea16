"""The webhook's CA and serving certificate: a real TLS handshake, renewal and CA rotation."""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cachefleet_operator.webhook.certificates import (
    WebhookCertificates,
    ensure,
    split_bundle,
)
from cachefleet_operator.webhook.tls import ca_bundle_patch
from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

HOSTS = ["cachefleet-webhook.cachefleet-system.svc", "127.0.0.1"]
NOW = datetime.now(UTC)


def handshake(server: WebhookCertificates, trusted: bytes, host: str) -> str:
    """Serve ``server``'s certificate on loopback; connect trusting ``trusted``, naming ``host``."""
    with tempfile.TemporaryDirectory() as directory:
        cert, key, bundle = (Path(directory) / n for n in ("c.pem", "k.pem", "b.pem"))
        cert.write_bytes(server.serving.certificate)
        key.write_bytes(server.serving.key)
        bundle.write_bytes(trusted)
        serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        serving.load_cert_chain(cert, key)
        client = ssl.create_default_context(cafile=str(bundle))
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]

            def accept() -> None:
                connection, _ = listener.accept()
                try:
                    with serving.wrap_socket(connection, server_side=True) as tls:
                        tls.sendall(b"ok")
                except (ssl.SSLError, OSError):
                    pass

            thread = threading.Thread(target=accept)
            thread.start()
            try:
                with socket.create_connection(("127.0.0.1", port)) as raw:
                    server_name = None if host[0].isdigit() else host
                    with client.wrap_socket(raw, server_hostname=server_name or host) as tls:
                        return tls.recv(2).decode()
            finally:
                thread.join(timeout=5)


def verifies(server: WebhookCertificates, trusted: bytes, host: str, at: datetime) -> bool:
    """Whether a client trusting ``trusted`` accepts ``server`` for ``host`` at time ``at``."""
    store = Store(x509.load_pem_x509_certificates(trusted))
    verifier = PolicyBuilder().store(store).time(at).build_server_verifier(DNSName(host))
    try:
        verifier.verify(x509.load_pem_x509_certificate(server.serving.certificate), [])
    except VerificationError:
        return False
    return True


def test_the_serving_certificate_is_trusted_through_the_ca_for_every_host() -> None:
    certificates = ensure(None, HOSTS, NOW)
    for host in HOSTS:
        assert handshake(certificates, certificates.bundle, host) == "ok"


def test_current_certificates_are_kept_and_renewed_when_a_third_of_their_life_is_left() -> None:
    first = ensure(None, HOSTS, NOW)
    assert ensure(first, HOSTS, NOW + timedelta(days=200)) == first
    renewed = ensure(first, HOSTS, NOW + timedelta(days=250))
    assert renewed.ca == first.ca and renewed.bundle == first.bundle
    assert renewed.serving != first.serving
    # A new host (the Service renamed, a URL added) renews the serving certificate at once.
    assert ensure(first, [*HOSTS, "127.0.0.2"], NOW).serving != first.serving


def test_a_ca_rotation_keeps_the_old_ca_trusted_until_it_expires() -> None:
    first = ensure(None, HOSTS, NOW)
    # What replicas serve just before the rotation: a yearly renewal signed by the first CA.
    before = ensure(first, HOSTS, NOW + timedelta(days=3 * 365))
    assert before.ca == first.ca and before.serving != first.serving
    at = NOW + timedelta(days=3 * 365 + 150)
    rotated = ensure(before, HOSTS, at)
    assert rotated.ca != first.ca
    assert len(split_bundle(rotated.bundle)) == 2
    # Replicas still serving the old certificate and those serving the new one: both trusted.
    assert verifies(before, rotated.bundle, HOSTS[0], at)
    assert verifies(rotated, rotated.bundle, HOSTS[0], at)
    assert not verifies(rotated, before.bundle, HOSTS[0], at)
    later = ensure(rotated, HOSTS, NOW + timedelta(days=5 * 365 + 1))
    assert split_bundle(later.bundle) == split_bundle(rotated.ca.certificate)


def test_secret_round_trip() -> None:
    first = ensure(None, HOSTS, NOW)
    assert WebhookCertificates.from_secret_data(first.to_secret_data()) == first
    assert WebhookCertificates.from_secret_data({"tls.crt": b"x"}) is None


def test_the_ca_bundle_patch_touches_only_webhooks_that_differ() -> None:
    import base64

    bundle = b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
    encoded = base64.b64encode(bundle).decode()
    configuration = {
        "webhooks": [
            {"name": "sidecar.cachefleet.io", "clientConfig": {"service": {"name": "x"}}},
            {"name": "other.cachefleet.io", "clientConfig": {"caBundle": encoded}},
        ]
    }
    assert ca_bundle_patch(configuration, bundle) == [
        {"op": "test", "path": "/webhooks/0/name", "value": "sidecar.cachefleet.io"},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": encoded},
    ]
    configuration["webhooks"][0]["clientConfig"]["caBundle"] = encoded
    assert ca_bundle_patch(configuration, bundle) == []
