"""Google Cloud Storage V4 signed URLs (``GOOG4-RSA-SHA256``), query-string form.

The canonical request is method, path, sorted canonical query (without the signature),
``host:<host>`` and a blank line, the signed headers (``host``) and ``UNSIGNED-PAYLOAD``;
the string to sign is the algorithm, ``X-Goog-Date``, the credential scope and the hex
SHA-256 of the canonical request; the signature is the hex RSA PKCS#1 v1.5 SHA-256
signature of that string by the service account. Who signs is a ``BlobSigner``: the
service account's private key here in the process (~1 ms), or IAM's ``signBlob`` for
identities without a key (GKE workload identity), a network call run in a thread.
URLs are cached by ``cache.URLCache``, so either cost is paid once per digest per URL
life, never on a warm GET.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote, urlsplit

ALGORITHM = "GOOG4-RSA-SHA256"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class BlobSigner:
    """Signs bytes as the service account ``email`` (RSA PKCS#1 v1.5 with SHA-256):
    in the process with its private key, or with a blocking call (IAM ``signBlob``
    over HTTP) run in a thread, off the event loop."""

    def __init__(self, email: str, sign_bytes: Callable[[bytes], bytes], blocking: bool
                 ) -> None:
        self.email = email
        self._sign = sign_bytes
        self._blocking = blocking

    async def sign(self, message: bytes) -> bytes:
        """The signature of ``message``."""
        if self._blocking:
            return await asyncio.to_thread(self._sign, message)
        return self._sign(message)


def _quote(text: str) -> str:
    return quote(text, safe="~")


class V4Signer:
    """Signs GET URLs for objects under ``endpoint`` (path style: ``/<bucket>/<key>``)."""

    def __init__(self, endpoint: str, signer: BlobSigner) -> None:
        parts = urlsplit(endpoint)
        port = "" if parts.port in (None, _DEFAULT_PORTS.get(parts.scheme)) else f":{parts.port}"
        self._host = f"{parts.hostname}{port}"
        self._origin = f"{parts.scheme}://{self._host}"
        self.signer = signer

    @property
    def host(self) -> str:
        """The host (and port) URLs carry; it is part of what is signed."""
        return self._host

    def string_to_sign(
        self, bucket: str, key: str, expires_s: int, now: float,
        response_params: Mapping[str, str] | None = None,
    ) -> tuple[str, str, str]:
        """(path, canonical query, string to sign) for a GET of ``bucket``/``key``."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        scope = f"{stamp[:8]}/auto/storage/goog4_request"
        params = {
            "X-Goog-Algorithm": ALGORITHM,
            "X-Goog-Credential": f"{self.signer.email}/{scope}",
            "X-Goog-Date": stamp,
            "X-Goog-Expires": str(expires_s),
            "X-Goog-SignedHeaders": "host",
            **(response_params or {}),
        }
        query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()))
        path = f"/{bucket}/{quote(key, safe='/~')}"
        canonical = f"GET\n{path}\n{query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        return path, query, f"{ALGORITHM}\n{stamp}\n{scope}\n{digest}"

    async def sign(
        self, bucket: str, key: str, expires_s: int, now: float,
        response_params: Mapping[str, str] | None = None,
    ) -> str:
        """A GET URL for ``bucket``/``key``, valid ``expires_s`` seconds from ``now``."""
        path, query, to_sign = self.string_to_sign(bucket, key, expires_s, now, response_params)
        signature = (await self.signer.sign(to_sign.encode())).hex()
        return f"{self._origin}{path}?{query}&X-Goog-Signature={signature}"
