"""Presigned S3 URLs signed here: AWS Signature Version 4, query-string form.

botocore spends ~180 µs of CPU on each presigned URL (request objects, endpoint rules,
event hooks) for what is four HMACs and a hash, and several milliseconds on each call it
makes itself. blobgate lets botocore sign the first URL of an operation, learns from it
where URLs point (scheme, host and bucket path, as botocore's endpoint rules and
addressing style chose them), and signs later URLs itself with the same credentials,
keeping the day's signing key: GET URLs for clients, HEAD URLs for its own existence
checks.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import NamedTuple
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class Credentials(NamedTuple):
    """What signs a URL: an access key, its secret, and the session token of temporary ones."""

    access_key: str
    secret_key: str
    token: str | None


def _quote(text: str) -> str:
    return quote(text, safe="-_.~")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class QuerySigner:
    """Signs URLs for the objects under one URL prefix, e.g. ``https://host/bucket/``."""

    def __init__(self, prefix: str, region: str) -> None:
        parts = urlsplit(prefix)
        port = f":{parts.port}" if parts.port is not None else ""
        if port[1:] == _DEFAULT_PORTS.get(parts.scheme):
            port = ""
        self._origin = f"{parts.scheme}://{parts.hostname}{port}"
        self._host = f"{parts.hostname}{port}"
        self._path = parts.path
        self._region = region
        self._signing_key: tuple[str, str, bytes] | None = None  # (secret, day, key)

    @classmethod
    def learn(cls, url: str, key: str, region: str) -> QuerySigner:
        """A signer for the prefix of ``url``, a URL botocore presigned for object ``key``."""
        path = urlsplit(url).path
        encoded = quote(key, safe="/~")
        if not path.endswith(encoded):
            raise ValueError(f"presigned URL path {path!r} does not end with the object key")
        prefix = url.split("?", 1)[0]
        return cls(prefix[: len(prefix) - len(encoded)], region)

    def sign(
        self,
        key: str,
        expires_s: int,
        credentials: Credentials,
        response_params: dict[str, str] | None = None,
        now: float | None = None,
        method: str = "GET",
    ) -> str:
        """A ``method`` URL for object ``key``, valid ``expires_s`` seconds from ``now``."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        day = stamp[:8]
        scope = f"{day}/{self._region}/s3/aws4_request"
        params = {
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Credential": f"{credentials.access_key}/{scope}",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": str(expires_s),
            "X-Amz-SignedHeaders": "host",
            **(response_params or {}),
        }
        if credentials.token is not None:
            params["X-Amz-Security-Token"] = credentials.token
        query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()))
        path = self._path + quote(key, safe="/~")
        canonical = f"{method}\n{path}\n{query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        to_sign = (f"{ALGORITHM}\n{stamp}\n{scope}\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")
        signature = hmac.new(self._key(credentials.secret_key, day), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        return f"{self._origin}{path}?{query}&X-Amz-Signature={signature}"

    def _key(self, secret: str, day: str) -> bytes:
        """The signing key for ``day`` (one per credentials and day, so it is kept)."""
        cached = self._signing_key
        if cached is not None and cached[0] == secret and cached[1] == day:
            return cached[2]
        key = _hmac(("AWS4" + secret).encode(), day)
        for part in (self._region, "s3", "aws4_request"):
            key = _hmac(key, part)
        self._signing_key = (secret, day, key)
        return key
