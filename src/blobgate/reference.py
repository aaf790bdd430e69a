"""Repository names, digests and where distribution stores a blob.

The grammar is the OCI distribution spec's (the same regular expressions the CNCF
registry uses). Parsing happens on the raw request path, before any percent-decoding,
so ``%2F`` or ``..`` can never smuggle a different repository or storage key through.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from blobgate.errors import DigestInvalid, NameInvalid

MAX_NAME_LENGTH = 255

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST = re.compile(r"(sha256|sha384|sha512):([a-f0-9]+)")
_BLOB_PATH = re.compile(r"/v2/(.+)/blobs/([^/]+)")
# The whole grammar in one expression: a valid blob path costs one match (query ignored).
_VALID_BLOB_PATH = re.compile(
    rf"/v2/({_COMPONENT}(?:/{_COMPONENT})*)/blobs/((sha256|sha384|sha512):([a-f0-9]+))(?:\?.*)?",
    re.DOTALL,
)


class Digest(str):
    """A content digest such as ``sha256:<64 hex>``, in its canonical text form.

    A ``str`` (so it hashes, compares and formats as its text), made by ``parse_digest``
    or ``blob_path`` once the text is known to be valid.
    """

    __slots__ = ()

    @property
    def algorithm(self) -> str:
        """``sha256``, ``sha384`` or ``sha512``."""
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        """The hex-encoded hash."""
        return self.partition(":")[2]


class BlobRef(NamedTuple):
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
    return Digest(text)


def parse_blob(raw_name: str, raw_digest: str) -> BlobRef:
    """Validate both parts of a blob path."""
    return BlobRef(parse_name(raw_name), parse_digest(raw_digest))


# The longest valid blob path (a 255-character name, a sha512 digest) plus a short query:
# longer targets are parsed every time, so the cache below holds at most ~10 MiB
# (8,192 answers of up to ~1.25 KB each, measured with tracemalloc).
MAX_CACHED_TARGET = 512


def blob_path(target: str) -> BlobRef | None:
    """The blob a raw request target ``/v2/<name>/blobs/<digest>[?query]`` names.

    ``None`` for any other path; ``NameInvalid`` or ``DigestInvalid`` for a blob path with
    a bad part. Works on the raw target: ``%2F`` is never decoded into a separator.
    Answers for targets up to ``MAX_CACHED_TARGET`` characters are remembered (errors are
    not): a fleet asks for the same few paths over and over, and a remembered answer costs
    a lookup instead of a 2 µs match; clients choose targets, so the keys are bounded.
    """
    if len(target) > MAX_CACHED_TARGET:
        return _blob_path(target)
    return _remembered_blob_path(target)


def _blob_path(target: str) -> BlobRef | None:
    match = _VALID_BLOB_PATH.fullmatch(target)
    if (match is not None and len(match[1]) <= MAX_NAME_LENGTH
            and len(match[4]) == _HEX_LENGTH[match[3]]):
        return BlobRef(match[1], Digest(match[2]))
    loose = _BLOB_PATH.fullmatch(target.partition("?")[0])
    return None if loose is None else parse_blob(loose[1], loose[2])


_remembered_blob_path = functools.lru_cache(maxsize=8192)(_blob_path)


def storage_key(rootdirectory: str, digest: Digest) -> str:
    """The S3 key where distribution keeps the blob's bytes."""
    root = rootdirectory.strip("/")
    prefix = f"{root}/" if root else ""
    return f"{prefix}docker/registry/v2/blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"
