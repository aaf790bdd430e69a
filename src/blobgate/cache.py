"""The presigned-URL cache: one signature per blob serves many pulls.

An entry is handed out only while more than half of its URL's life is left (and never
past the expiry of the credentials that signed it), so every client gets a URL with
ample time to finish its download. URLs are per digest: repository access is checked
before the cache is consulted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from blobgate.expiring import ExpiringCache
from blobgate.reference import Digest
from blobgate.signing import Presigner, SignedURL


class URLCache:
    """Caches presigned URLs per digest until half of their life is spent."""

    def __init__(
        self, presigner: Presigner, maxsize: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.presigner = presigner
        self.cache: ExpiringCache[Digest, SignedURL] = ExpiringCache(
            maxsize, lambda signed: signed.hand_out_until, clock
        )

    async def url_for(self, digest: Digest) -> SignedURL:
        """A cached URL with enough life left, or a newly signed one."""
        signed = self.cache.get(digest)
        if signed is None:
            signed = await self.presigner.presign_blob(digest)
            self.cache.put(digest, signed)
        return signed
