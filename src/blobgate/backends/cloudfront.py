"""CloudFront-signed blob URLs, and the client networks that bypass them.

Instead of a presigned S3 URL, blobgate can redirect a blob pull to a CloudFront
distribution in front of the bucket, so blobs are served (and cached) at the edge. The
distribution only serves URLs signed with a key in its trusted key group; this module
signs them with a canned policy (one resource, one expiry), exactly as CloudFront checks
them. The private key is read from a file and can be swapped at runtime (``KeyStore``).

Clients inside listed networks (e.g. the cluster itself, next to the bucket) get the
direct S3 URL instead; ``blobs`` makes that choice with ``routing.client_address``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from blobgate.backends.contract import DEFAULT_OPTIONS, SignedURL, URLOptions
from blobgate.config import SIGV4_MAX_EXPIRES_S
from blobgate.errors import StorageError
from blobgate.reference import Digest, storage_key

# CloudFront's URL-safe base64: standard alphabet with + = / replaced by - _ ~.
_CLOUDFRONT_B64 = str.maketrans("+=/", "-_~")
# Characters a base URL may contain verbatim (quote() also keeps letters, digits, -._~).
_URL_CHARS = ":/@!$&'()*+,;=%"


class CDNKeyError(ValueError):
    """The CloudFront private key cannot be used; the message names the file and why."""


class CloudFrontSigner:
    """Signs URLs under ``base_url`` with a CloudFront canned policy."""

    def __init__(
        self,
        base_url: str,
        key_pair_id: str,
        private_key: rsa.RSAPrivateKey,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"CDN base URL {base_url!r} is not an http(s) URL")
        if quote(base_url, safe=_URL_CHARS) != base_url:  # JSON would escape it differently
            raise ValueError(f"CDN base URL {base_url!r} must be ASCII and percent-encoded")
        if parts.query or parts.fragment:
            raise ValueError(f"CDN base URL {base_url!r} must not have a query or fragment")
        if not key_pair_id:
            raise ValueError("CloudFront key pair ID is empty")
        self.base_url = base_url.rstrip("/")
        self.key_pair_id = key_pair_id
        self._key = private_key
        self._clock = clock

    def resource(self, path: str) -> str:
        """The URL of ``path`` without query: the policy's Resource, byte for byte."""
        return f"{self.base_url}/{quote(path.lstrip('/'), safe='/:')}"

    def sign(self, path: str, expires_at: float) -> str:
        """A URL for ``path`` that CloudFront serves until ``expires_at`` (epoch seconds)."""
        expires = int(expires_at)
        if expires <= self._clock():
            raise ValueError(f"expiry {expires} is not in the future")
        resource = self.resource(path)
        condition = {"DateLessThan": {"AWS:EpochTime": expires}}
        statement = {"Statement": [{"Resource": resource, "Condition": condition}]}
        policy = json.dumps(statement, separators=(",", ":")).encode("ascii")
        # CloudFront only accepts SHA-1 signatures; that is its protocol, not our choice.
        signature = self._key.sign(policy, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
        encoded = base64.b64encode(signature).decode("ascii").translate(_CLOUDFRONT_B64)
        key_id = quote(self.key_pair_id, safe="")
        return f"{resource}?Expires={expires}&Signature={encoded}&Key-Pair-Id={key_id}"


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    """Read an unencrypted PEM RSA private key (PKCS#1 or PKCS#8) from ``path``."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise CDNKeyError(f"{path}: cannot read CloudFront key ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CDNKeyError(f"{path}: not a usable PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CDNKeyError(f"{path}: CloudFront needs an RSA key, not {type(key).__name__}")
    return key


class KeyStore:
    """The current ``CloudFrontSigner``, reloadable from its key file without a restart.

    Readers take ``store.signer`` (one attribute read, so always a complete signer);
    ``reload`` builds a new signer first and only then swaps it in.
    """

    def __init__(
        self,
        key_path: Path,
        base_url: str,
        key_pair_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key_path = key_path
        self._base_url = base_url
        self._clock = clock
        self.signer = CloudFrontSigner(base_url, key_pair_id, load_private_key(key_path), clock)

    def reload(self, key_pair_id: str | None = None) -> None:
        """Re-read the key file (and optionally switch key pair ID) and swap the signer.

        A new key pair in CloudFront has a new ID: pass it here when rotating. If the
        file is unusable, ``CDNKeyError`` is raised and the previous signer stays.
        """
        key = load_private_key(self.key_path)
        key_id = self.signer.key_pair_id if key_pair_id is None else key_pair_id
        self.signer = CloudFrontSigner(self._base_url, key_id, key, self._clock)

    def sign(self, path: str, expires_at: float) -> str:
        """Sign with the current signer."""
        return self.signer.sign(path, expires_at)


class CDNPresigner:
    """A ``Presigner`` handing out CloudFront URLs for blobs (the path is the S3 key)."""

    name = "cloudfront"
    options: frozenset[str] = frozenset()  # a canned policy signs no response headers

    def __init__(
        self,
        keys: KeyStore,
        rootdirectory: str,
        expires_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self._root = rootdirectory
        self._expires_s = expires_s
        self._clock = clock

    async def presign_blob(
        self, digest: Digest, options: URLOptions = DEFAULT_OPTIONS
    ) -> SignedURL:
        if options.filename is not None or options.cache_control is not None:
            raise StorageError("a CloudFront canned policy cannot sign response headers",
                               "cdn_options")
        now = self._clock()
        expires_at = float(int(now + (options.expires_s or self._expires_s)))
        url = self.keys.sign(storage_key(self._root, digest), expires_at)
        return SignedURL(url, now, expires_at)

    @property
    def default_expires_s(self) -> int:
        return self._expires_s

    def max_expires_s(self) -> int:
        return SIGV4_MAX_EXPIRES_S
