"""Azurite, Microsoft's Azure Storage emulator, as a real blob service for the tests.

It checks SAS signatures (account-key and user-delegation ones) as Azure does. It runs
as a child process on a free loopback port with path-style URLs
(``http://localhost:<port>/devstoreaccount1/<container>/<blob>``), installed on first
use by ``install-azurite.sh``. With a certificate and ``oauth`` it serves HTTPS and
accepts Bearer tokens (it checks their issuer, audience and expiry, not a signature),
which user delegation keys need; ``bearer_token`` makes such a token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from azure.storage.blob import BlobServiceClient

from blobgate.devstack.procs import Process, free_port
from blobgate.reference import parse_digest, storage_key

INSTALLER = Path(__file__).with_name("install-azurite.sh")
NPM_MISSING = 3  # install-azurite.sh's exit status when it would need npm
ACCOUNT = "devstoreaccount1"
# Azurite's published development key (the same in every installation).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "registry"


def install() -> tuple[Path | None, str]:
    """The azurite-blob binary (``None`` when npm is missing) and the installer's message."""
    result = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True,
                            timeout=300, check=False)
    if result.returncode == NPM_MISSING:
        return None, result.stderr.strip()
    assert result.returncode == 0, f"install-azurite.sh failed:\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1]), ""


class Azurite:
    """A running azurite-blob, its endpoint, and a key-authorized client to fill it."""

    def __init__(self, binary: Path, workdir: Path, tls: tuple[Path, Path, Path] | None = None
                 ) -> None:
        """``tls``: (CA, certificate, key) to serve HTTPS with OAuth."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        scheme = "https" if tls else "http"
        # Addressed as localhost: a host apart from the gateway's 127.0.0.1, as in production.
        self.endpoint_url = f"{scheme}://localhost:{self.port}/{ACCOUNT}"
        argv = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--location", str(workdir / "data"), "--skipApiVersionCheck", "--disableTelemetry"]
        self.ca_file: str | None = None
        context = None
        if tls is not None:
            ca, cert, key = tls
            argv += ["--oauth", "basic", "--cert", str(cert), "--key", str(key)]
            self.ca_file = str(ca)
            context = ssl.create_default_context(cafile=self.ca_file)
        self.process = Process(argv, workdir / "azurite.log")
        try:
            self.process.wait_http(f"{self.endpoint_url}?comp=list", context=context)
        except BaseException:
            self.process.stop()
            raise
        self.client = BlobServiceClient(self.endpoint_url, credential={
            "account_name": ACCOUNT, "account_key": KEY}, connection_verify=self.ca_file or True)
        self.client.create_container(CONTAINER)

    def put_blob(self, data: bytes, rootdirectory: str = "", container: str = CONTAINER) -> str:
        """Store ``data`` where distribution's azure driver keeps a blob; returns the digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        name = storage_key(rootdirectory, parse_digest(digest))
        self.client.get_blob_client(container, name).upload_blob(data, overwrite=True)
        return digest

    def stop(self) -> None:
        self.client.close()
        self.process.stop()


@contextmanager
def running(binary: Path, workdir: Path, tls: tuple[Path, Path, Path] | None = None
            ) -> Iterator[Azurite]:
    """An ``Azurite`` for the duration of the context."""
    server = Azurite(binary, workdir, tls)
    try:
        yield server
    finally:
        server.stop()


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def bearer_token(life_s: int = 3600) -> AccessToken:
    """An Entra ID-shaped access token for storage, as Azurite's basic OAuth checks it."""
    now = int(time.time())
    claims = {"iss": "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/",
              "aud": "https://storage.azure.com", "iat": now - 60, "nbf": now - 60,
              "exp": now + life_s, "oid": "23657296-5cd5-45b0-a809-d972a7f4dfe1",
              "tid": "dd0d0df1-06c3-436c-8034-4b9a153097ce"}
    token = f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{_b64(claims)}.c2lnbmF0dXJl"
    return AccessToken(token, now + life_s)


class StaticTokenCredential:
    """An ``AsyncTokenCredential`` standing in for Entra ID (which is not reachable here);
    counts the tokens it hands out."""

    def __init__(self) -> None:
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return bearer_token()

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
