"""The webhook server's certificate: from a directory (a Secret mounted by the installer, shared by
every replica), else a self-signed one made at start (fine for one replica)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class ServingCertificate:
    certfile: Path
    keyfile: Path
    ca_pem: bytes
    """What the API server must trust to call the webhook (the webhook configuration's caBundle)."""


def from_directory(directory: Path) -> ServingCertificate:
    """``tls.crt``, ``tls.key`` and ``ca.crt`` (the layout of a kubernetes.io/tls Secret with its CA)."""
    ca = directory / "ca.crt"
    return ServingCertificate(
        directory / "tls.crt",
        directory / "tls.key",
        ca.read_bytes() if ca.exists() else (directory / "tls.crt").read_bytes(),
    )


def self_signed(hosts: list[str], directory: Path) -> ServingCertificate:
    """A certificate for ``hosts`` (DNS names or IP addresses), signed by its own key, in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.now(UTC)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    (directory / "tls.crt").write_bytes(cert_pem)
    keyfile = directory / "tls.key"
    keyfile.touch(mode=0o600)
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ServingCertificate(directory / "tls.crt", keyfile, cert_pem)
