"""The one contract every storage backend meets, so the blob path never asks which it is.

Three promises, each a Protocol:

* ``Presigner``: a URL for a blob that works without credentials for a while (S3
  SigV4, Azure SAS, GCS V4, CloudFront canned policy). A ``SignedURL`` carries the
  window in which it works; ``URLOptions`` are what the URL API lets callers choose
  (``options`` says which of them a signer can sign); ``max_expires_s`` is how long a
  URL signed now can live at most (the scheme's limit, or less when the signing
  credentials expire sooner).
* ``BlobSource``: a blob's size and the bytes of a ``Span`` of it, for streaming
  (object stores, or the registry itself).
* ``ObjectStore``: both, plus ``stat``, whether the blob's object is there (its size,
  or ``NotInStorage``), which ``cache.Presence`` asks before a digest's first URL.

Failures leave a backend as ``StorageError`` (or ``RegistryError`` from the registry
source), never as an SDK's own exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from blobgate.reference import BlobRef, Digest


@dataclass(frozen=True, slots=True)
class SignedURL:
    """A signed URL and the window in which it works (and the object's size, once
    storage has been asked)."""

    url: str
    signed_at: float
    expires_at: float
    size: int | None = None

    @property
    def hand_out_until(self) -> float:
        """After this moment less than half of the URL's life is left: sign a new one."""
        return self.signed_at + (self.expires_at - self.signed_at) / 2


@dataclass(frozen=True, slots=True)
class URLOptions:
    """Choices a URL API caller may make; ``None`` means the configured default."""

    expires_s: int | None = None
    filename: str | None = None
    cache_control: str | None = None


DEFAULT_OPTIONS = URLOptions()


URL_OPTIONS = frozenset({"filename", "cache_control"})


class Presigner(Protocol):
    """Anything that can sign a URL for a blob."""

    @property
    def name(self) -> str:
        """What signs the URLs (``s3``, ``azure``, ``gcs``, ``cloudfront``): a metrics label."""
        ...

    @property
    def options(self) -> frozenset[str]:
        """The ``URLOptions`` fields (of ``URL_OPTIONS``) this signer can sign into a URL."""
        ...

    @property
    def default_expires_s(self) -> int:
        """The configured life of a URL."""
        ...

    async def presign_blob(
        self, digest: Digest, options: URLOptions = DEFAULT_OPTIONS
    ) -> SignedURL:
        """A freshly signed URL for ``digest``."""
        ...

    def max_expires_s(self) -> int:
        """The longest life a URL signed now can have."""
        ...


@dataclass(frozen=True, slots=True)
class Span:
    """An inclusive byte range ``first``..``last`` of a blob of ``size`` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @property
    def whole(self) -> bool:
        return self.first == 0 and self.last == self.size - 1


class BlobSource(Protocol):
    """Where streamed bytes come from (an object store, or the registry itself)."""

    async def size(self, ref: BlobRef, authorization: str) -> int:
        """The blob's size in bytes."""
        ...

    def open(
        self, ref: BlobRef, authorization: str, span: Span
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """The bytes of ``span``; failures raise ``StorageError`` or ``RegistryError``."""
        ...


class ObjectStore(Presigner, BlobSource, Protocol):
    """A store holding the registry's blobs under distribution's layout: signs URLs to
    them, streams them, and says whether one is there."""

    async def stat(self, digest: Digest) -> int:
        """The size of the blob's object; ``NotInStorage`` if it is absent."""
        ...
