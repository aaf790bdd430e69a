"""Google Cloud Storage for the tests: a service account made here, the OAuth token
endpoint its key file names, an emulator serving bytes, and an independent V4 check.

No emulator verifies V4 signatures, so ``verify`` rebuilds the canonical request and
string to sign from the URL, following Google's documented algorithm (no code shared
with blobgate or google-cloud-storage), and checks the RSA PKCS#1 v1.5 SHA-256
signature with the service account's public key. The emulator
(``gcp-storage-emulator``) stands in for the JSON API (sizes, ranged media) and
serves signed URLs' paths without checking them. The key file's ``token_uri`` points
at ``TokenServer``, which checks the JWT assertion google-auth signs and hands out
access tokens, so the real credential chain (``GOOGLE_APPLICATION_CREDENTIALS``) runs.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from blobgate.devstack.procs import Process, free_port
from blobgate.reference import parse_digest, storage_key

BUCKET = "registry"
EMAIL = "blobgate@test-project.iam.gserviceaccount.com"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # google-auth's, whatever token_uri


class TokenServer:
    """Google's OAuth token endpoint for service-account JWT assertions, on loopback."""

    def __init__(self, public_key: rsa.RSAPublicKey) -> None:
        self.issued: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                assertion = parse_qs(body)["assertion"][0]
                try:
                    claims = jwt.decode(assertion, public_key, algorithms=["RS256"],
                                        audience=GOOGLE_TOKEN_AUDIENCE)
                except jwt.InvalidTokenError as exc:
                    self.send_error(400, str(exc))
                    return
                assert claims["iss"] == EMAIL
                assert "devstorage.read_only" in claims["scope"]
                token = f"ya29.test-{len(server.issued)}"
                server.issued.append(token)
                answer = json.dumps({"access_token": token, "expires_in": 3600,
                                     "token_type": "Bearer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class ServiceAccount:
    """A service account key generated for the test run, written as a key file."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key = self.key.public_key()
        self.tokens = TokenServer(self.public_key)
        self.key_file = directory / "service-account.json"
        pem = self.key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        self.key_file.write_text(json.dumps({
            "type": "service_account", "project_id": "test-project",
            "private_key_id": hashlib.sha1(pem.encode()).hexdigest(),  # noqa: S324 - an ID
            "private_key": pem, "client_email": EMAIL, "client_id": "1234567890",
            "token_uri": self.tokens.url,
        }))


class Emulator:
    """gcp-storage-emulator on a free loopback port, with the registry's bucket."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.endpoint_url = f"http://localhost:{port}"  # a host apart from the gateway's
        self.process = Process([sys.executable, "-m", "gcp_storage_emulator", "start",
                                "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                                "--default-bucket", BUCKET, "--quiet"],
                               workdir / "gcs-emulator.log")
        try:
            self.process.wait_http(f"http://127.0.0.1:{port}/")
        except BaseException:
            self.process.stop()
            raise

    def put_blob(self, data: bytes, rootdirectory: str = "") -> str:
        """Store ``data`` where distribution's gcs driver keeps a blob; returns the digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        name = storage_key(rootdirectory, parse_digest(digest))
        url = (f"{self.endpoint_url}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&"
               f"name={quote(name, safe='')}")
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        return digest


@contextmanager
def emulator(workdir: Path) -> Iterator[Emulator]:
    server = Emulator(workdir)
    try:
        yield server
    finally:
        server.process.stop()


def _encode(text: str) -> str:
    """Google's URI encoding: everything but A-Z a-z 0-9 - . _ ~ percent-encoded."""
    return quote(text, safe="-._~")


def verify(url: str, public_key: rsa.RSAPublicKey, method: str = "GET",
           now: float | None = None) -> dict[str, str]:
    """Check ``url``'s V4 signature as GCS would for ``method``; returns its query fields.

    Raises ``InvalidSignature`` for a signature that does not match, ``AssertionError``
    for a URL that is malformed or outside its validity at ``now``.
    """
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    fields = dict(params)
    signature = bytes.fromhex(fields["X-Goog-Signature"])
    canonical_query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(
        (k, v) for k, v in params if k != "X-Goog-Signature"))
    assert fields["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert fields["X-Goog-SignedHeaders"] == "host"
    _email, date, location, service, request_type = fields["X-Goog-Credential"].split("/")
    assert (location, service, request_type) == ("auto", "storage", "goog4_request")
    assert fields["X-Goog-Date"].startswith(date)
    canonical_request = "\n".join([method, parts.path, canonical_query,
                                   f"host:{parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"])
    string_to_sign = "\n".join([
        "GOOG4-RSA-SHA256", fields["X-Goog-Date"], f"{date}/auto/storage/goog4_request",
        hashlib.sha256(canonical_request.encode()).hexdigest()])
    public_key.verify(signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    signed = calendar.timegm(time.strptime(fields["X-Goog-Date"], "%Y%m%dT%H%M%SZ"))
    expires = int(fields["X-Goog-Expires"])
    assert 1 <= expires <= 7 * 24 * 3600
    at = time.time() if now is None else now
    assert signed - 60 <= at <= signed + expires, "outside the URL's validity"
    return fields


__all__ = ["BUCKET", "EMAIL", "Emulator", "InvalidSignature", "ServiceAccount", "emulator",
           "verify"]
