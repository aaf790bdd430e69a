"""Keys, certificates and Docker-token-spec JWTs for tests, all made in memory."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from blobgate.auth.keys import libtrust_key_id
from blobgate.devstack.pki import PrivateKey, certificate

ISSUER = "test-issuer"
SERVICE = "test-registry"

def pem(*certs: x509.Certificate) -> bytes:
    """A PEM bundle of ``certs``."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def x5c(*certs: x509.Certificate) -> list[str]:
    """An ``x5c`` header value for a chain, leaf first."""
    return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in certs]


def new_rsa() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Signer:
    """A token service: a signing key, its certificate, and token minting."""

    key: PrivateKey = field(default_factory=new_rsa)
    name: str = "token-signer"

    def __post_init__(self) -> None:
        self.cert = certificate(self.key, self.name)
        self.kid = libtrust_key_id(self.key.public_key())

    def write_bundle(self, directory: Path) -> Path:
        """Write the certificate as a PEM file and return its path."""
        path = directory / f"{self.name}-{uuid.uuid4().hex[:8]}.crt"
        path.write_bytes(pem(self.cert))
        return path

    def claims(self, pull: str | None = None, **overrides: Any) -> dict[str, Any]:
        """Valid claims granting pull on ``pull`` (if given), with ``overrides`` applied."""
        now = int(time.time())
        access = [{"type": "repository", "name": pull, "actions": ["pull"]}] if pull else []
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "alice",
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 5,
            "iat": now - 5,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        claims.update(overrides)
        return claims

    def token(
        self,
        pull: str | None = None,
        *,
        headers: dict[str, Any] | None = None,
        algorithm: str = "RS256",
        drop: tuple[str, ...] = (),
        **overrides: Any,
    ) -> str:
        """A signed token; ``headers`` replace the default ``kid`` header; claims named
        in ``drop`` are left out."""
        hdrs = {"kid": self.kid} if headers is None else headers
        claims = {k: v for k, v in self.claims(pull, **overrides).items() if k not in drop}
        return jwt.encode(claims, self.key, algorithm, headers=hdrs)
