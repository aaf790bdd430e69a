"""Independent checks of CloudFront canned-policy URLs: parse them and verify the
RSA-SHA1 signature with the public key, with no code shared with blobgate."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def split(url: str) -> tuple[str, int, bytes, str]:
    """(resource, expires, signature bytes, key pair id) of a signed URL, parsed here."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    assert sorted(query) == ["Expires", "Key-Pair-Id", "Signature"]
    assert all(len(v) == 1 for v in query.values())
    raw_sig = query["Signature"][0]
    assert not set(raw_sig) & set("+/="), "not CloudFront's base64 variant"
    std = raw_sig.replace("-", "+").replace("_", "=").replace("~", "/")
    signature = base64.b64decode(std, validate=True)
    resource = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return resource, int(query["Expires"][0]), signature, query["Key-Pair-Id"][0]


def verify(public: rsa.RSAPublicKey, resource: str, expires: int, signature: bytes) -> None:
    """Rebuild the canned policy by hand and check the RSA-SHA1 PKCS#1 v1.5 signature."""
    policy = (
        '{"Statement":[{"Resource":"' + resource + '","Condition":'
        '{"DateLessThan":{"AWS:EpochTime":' + str(expires) + "}}}]}"
    )
    public.verify(signature, policy.encode(), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
