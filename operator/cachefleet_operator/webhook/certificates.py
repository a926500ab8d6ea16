"""The webhook's own CA and serving certificate, made with ``cryptography``; pure but for time.

The CA signs the serving certificate; the webhook configuration's ``caBundle`` carries the CA,
so rotating the serving certificate alone never touches the API server's trust. The CA is
rotated too, before it expires: the new CA is added to the bundle first and the old one stays
there until it expires, so the API server trusts both the old and the new serving certificate
while replicas pick the new one up.

Everything lives in one Secret (``kubernetes.io/tls`` plus ``ca.crt``, ``ca.key`` and
``bundle.crt``), so every replica serves the same certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import ip_address

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = timedelta(days=5 * 365)
SERVING_LIFETIME = timedelta(days=365)
# Renew once less than this share of the lifetime is left.
RENEW_WHEN_LEFT = 1 / 3
_BACKDATE = timedelta(minutes=5)  # clocks of the API server and the operator may differ a bit


@dataclass(frozen=True)
class Pem:
    certificate: bytes
    key: bytes


@dataclass(frozen=True)
class WebhookCertificates:
    ca: Pem
    serving: Pem
    # Every CA the API server should trust now: the current one, and an older one until it
    # expires (a CA rotation in progress).
    bundle: bytes

    def to_secret_data(self) -> dict[str, bytes]:
        return {
            "ca.crt": self.ca.certificate,
            "ca.key": self.ca.key,
            "tls.crt": self.serving.certificate,
            "tls.key": self.serving.key,
            "bundle.crt": self.bundle,
        }

    @classmethod
    def from_secret_data(cls, data: dict[str, bytes]) -> WebhookCertificates | None:
        needed = ("ca.crt", "ca.key", "tls.crt", "tls.key")
        if any(not data.get(key) for key in needed):
            return None
        return cls(
            ca=Pem(data["ca.crt"], data["ca.key"]),
            serving=Pem(data["tls.crt"], data["tls.key"]),
            bundle=data.get("bundle.crt") or data["ca.crt"],
        )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_ca(now: datetime) -> Pem:
    key = _key()
    # Dated, so an old and a new CA in one bundle never share a subject during a rotation.
    common_name = f"cachefleet-webhook-ca-{now:%Y%m%d%H%M%S}"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pem(certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def new_serving(ca: Pem, hosts: list[str], now: datetime) -> Pem:
    """A serving certificate for ``hosts`` (DNS names or IP addresses), signed by ``ca``."""
    ca_certificate = x509.load_pem_x509_certificate(ca.certificate)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the webhook CA key is not an EC key")
    key = _key()
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    not_after = min(now + SERVING_LIFETIME, ca_certificate.not_valid_after_utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def _due(certificate: bytes, now: datetime) -> bool:
    parsed = x509.load_pem_x509_certificate(certificate)
    start, end = parsed.not_valid_before_utc, parsed.not_valid_after_utc
    return now >= end - (end - start) * RENEW_WHEN_LEFT


def _hosts_of(certificate: bytes) -> set[str]:
    parsed = x509.load_pem_x509_certificate(certificate)
    try:
        names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    found = {str(n) for n in names.get_values_for_type(x509.DNSName)}
    found |= {str(n) for n in names.get_values_for_type(x509.IPAddress)}
    return found


def _still_valid(pems: list[bytes], now: datetime) -> list[bytes]:
    return [p for p in pems if x509.load_pem_x509_certificate(p).not_valid_after_utc > now]


def split_bundle(bundle: bytes) -> list[bytes]:
    """The PEM certificates of a bundle, one each."""
    marker = b"-----END CERTIFICATE-----"
    return [part.strip() + b"\n" + marker + b"\n" for part in bundle.split(marker) if part.strip()]


def ensure(
    current: WebhookCertificates | None, hosts: list[str], now: datetime
) -> WebhookCertificates:
    """The certificates to use: ``current`` when still good, else renewed (see module doc)."""
    if current is None:
        ca = new_ca(now)
        return WebhookCertificates(ca, new_serving(ca, hosts, now), ca.certificate)
    ca, bundle = current.ca, current.bundle
    if _due(ca.certificate, now):
        ca = new_ca(now)
        old = [p for p in split_bundle(bundle) if p.strip() != ca.certificate.strip()]
        bundle = b"".join([ca.certificate, *_still_valid(old, now)])
        return WebhookCertificates(ca, new_serving(ca, hosts, now), bundle)
    pruned = b"".join(_still_valid(split_bundle(bundle), now)) or ca.certificate
    serving = current.serving
    if _due(serving.certificate, now) or not set(hosts) <= _hosts_of(serving.certificate):
        serving = new_serving(ca, hosts, now)
    return WebhookCertificates(ca, serving, pruned)
