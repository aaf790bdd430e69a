"""Token-signing keys: the trusted certificate bundle and libtrust key IDs.

The Docker token spec (and Harbor) name a signing key by its libtrust key ID: the
SHA-256 of the DER SubjectPublicKeyInfo, truncated to 240 bits, base32-encoded and
split into 12 groups of 4. Both the verifier (``auth``) and the development token
issuer (``devstack``) need exactly this, so it lives here once.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class KeyBundleError(ValueError):
    """The certificate bundle cannot be used; the message says why."""


def libtrust_key_id(key: PublicKey) -> str:
    """The libtrust key ID of ``key``, e.g. ``ABCD:EFGH:...`` (12 groups of 4)."""
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass(frozen=True)
class TrustedKeys:
    """Certificates trusted to sign tokens, indexed by libtrust key ID."""

    certificates: tuple[x509.Certificate, ...]
    by_kid: dict[str, PublicKey]

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "certificate bundle") -> TrustedKeys:
        """Parse a PEM bundle; only RSA and EC keys are accepted."""
        try:
            certs = tuple(x509.load_pem_x509_certificates(pem))
        except ValueError as exc:
            raise KeyBundleError(f"{source}: not a PEM certificate bundle ({exc})") from None
        by_kid: dict[str, PublicKey] = {}
        for cert in certs:
            key = cert.public_key()
            if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
                raise KeyBundleError(f"{source}: unsupported key type {type(key).__name__}")
            by_kid[libtrust_key_id(key)] = key
        return cls(certs, by_kid)

    @classmethod
    def from_file(cls, path: Path) -> TrustedKeys:
        """Read and parse the bundle at ``path``."""
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise KeyBundleError(f"{path}: {exc.strerror}") from None
        return cls.from_pem(pem, str(path))
