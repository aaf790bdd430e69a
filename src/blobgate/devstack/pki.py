"""Token-signing material for the local stack: an RSA key and a self-signed certificate.

The registry trusts tokens whose signing certificate is in its ``rootcertbundle``; the
gateway reads the same file. Generating a fresh pair per stack keeps every run isolated.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SigningFiles:
    """Where the token-signing key and its certificate were written."""

    key_path: Path
    cert_path: Path


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _alt_names(sans: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    return x509.SubjectAlternativeName(names)


def certificate(
    key: PrivateKey,
    name: str,
    issuer: tuple[PrivateKey, str] | None = None,
    ca: bool = True,
    days: int = 365,
    sans: Sequence[str] = (),
) -> x509.Certificate:
    """A certificate for ``key`` named ``name``, self-signed unless ``issuer`` (key, name).

    ``sans`` are host names or IP addresses the certificate is valid for (TLS servers).
    """
    signer_key, signer_name = issuer or (key, name)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, signer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(_alt_names(sans), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def write_signing_files(
    directory: Path, common_name: str = "blobgate-dev-token-issuer"
) -> SigningFiles:
    """Generate an RSA-2048 key and a one-year self-signed certificate in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = certificate(key, common_name)
    files = SigningFiles(directory / "token.key", directory / "token.crt")
    files.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key_path.chmod(0o600)
    files.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files
