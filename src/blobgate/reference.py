"""Repository names, digests and where distribution stores a blob.

The grammar is the OCI distribution spec's (the same regular expressions the CNCF
registry uses). Parsing happens on the raw request path, before any percent-decoding,
so ``%2F`` or ``..`` can never smuggle a different repository or storage key through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from blobgate.errors import DigestInvalid, NameInvalid

MAX_NAME_LENGTH = 255

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST = re.compile(r"(sha256|sha384|sha512):([a-f0-9]+)")
_BLOB_PATH = re.compile(r"/v2/(.+)/blobs/([^/]+)")


@dataclass(frozen=True, slots=True)
class Digest:
    """A content digest such as ``sha256:<64 hex>``."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A blob as addressed by a client: repository name plus digest."""

    name: str
    digest: Digest


def parse_name(name: str) -> str:
    """``name`` if it is a valid repository name, else ``NameInvalid``."""
    if len(name) > MAX_NAME_LENGTH:
        raise NameInvalid("repository name too long", {"max": MAX_NAME_LENGTH})
    if _NAME.fullmatch(name) is None:
        raise NameInvalid("invalid repository name", {"name": name[:MAX_NAME_LENGTH]})
    return name


def parse_digest(text: str) -> Digest:
    """The digest in ``text``, else ``DigestInvalid``."""
    match = _DIGEST.fullmatch(text)
    if match is None or len(match[2]) != _HEX_LENGTH[match[1]]:
        raise DigestInvalid("invalid digest", {"digest": text[:200]})
    return Digest(match[1], match[2])


def match_blob_path(raw_path: str) -> tuple[str, str] | None:
    """Split ``/v2/<name>/blobs/<digest>`` (query ignored) into raw name and digest text.

    Returns ``None`` for any other path; validation is left to ``parse_blob``.
    """
    match = _BLOB_PATH.fullmatch(raw_path.partition("?")[0])
    return None if match is None else (match[1], match[2])


def parse_blob(raw_name: str, raw_digest: str) -> BlobRef:
    """Validate both parts of a blob path."""
    return BlobRef(parse_name(raw_name), parse_digest(raw_digest))


def storage_key(rootdirectory: str, digest: Digest) -> str:
    """The S3 key where distribution keeps the blob's bytes."""
    root = rootdirectory.strip("/")
    prefix = f"{root}/" if root else ""
    return f"{prefix}docker/registry/v2/blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"
