"""A private certificate authority made at test time, issuing server and client certificates."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from blobgate.devstack.pki import certificate

from support.tokens import new_rsa, pem


class PKI:
    """A CA whose certificate is at ``ca_path``; ``issue`` writes a certificate and key."""

    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.name = name
        self.key = new_rsa()
        self.ca_path = directory / f"{name}.pem"
        self.ca_path.write_bytes(pem(certificate(self.key, name)))

    def issue(self, name: str, sans: tuple[str, ...] = (), file_name: str | None = None
              ) -> tuple[Path, Path]:
        """(certificate path, key path) for ``name``, valid for ``sans``."""
        key = new_rsa()
        cert = certificate(key, name, issuer=(self.key, self.name), ca=False, sans=sans)
        stem = file_name or name
        cert_path, key_path = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        cert_path.write_bytes(pem(cert))
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return cert_path, key_path
