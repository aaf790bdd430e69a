"""What a URL signer promises: S3 presigning and CloudFront signing both fit it.

A ``SignedURL`` carries the window in which it works; ``URLOptions`` are what the URL
API lets callers choose; ``max_expires_s`` is how long a URL signed now can live at
most (SigV4's 7 days, or less when the signing credentials expire sooner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blobgate.reference import Digest


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


class Presigner(Protocol):
    """Anything that can sign a URL for a blob."""

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
