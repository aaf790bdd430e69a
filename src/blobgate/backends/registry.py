"""The registry itself as the source of blob bytes (``storage.backend: proxy``).

For deployments without S3 access (filesystem-backed registries, storage reachable only
by the registry): blobgate asks the registry with the client's credentials and, when
the registry redirects to its storage, follows that redirect itself without sending
the client's ``Authorization`` to the storage host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from yarl import URL

from blobgate.backends.contract import Span
from blobgate.errors import StorageError
from blobgate.reference import BlobRef
from blobgate.upstream import Upstream

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class RegistryBlobs:
    """Blob sizes and bytes fetched from the upstream registry."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    async def size(self, ref: BlobRef, authorization: str) -> int:
        async with await self._fetch("HEAD", ref, authorization, {}) as response:
            if response.status != 200 or response.content_length is None:
                raise StorageError(f"registry HEAD gave {response.status}", "no_size")
            return response.content_length

    @asynccontextmanager
    async def open(
        self, ref: BlobRef, authorization: str, span: Span
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        extra = {} if span.whole else {"Range": f"bytes={span.first}-{span.last}"}
        # Bytes relayed for a client: one of the relay pool's places while they flow.
        async with (self._upstream.slot(),
                    await self._fetch("GET", ref, authorization, extra) as response):
            if response.status != (200 if span.whole else 206):
                raise StorageError(f"registry GET gave {response.status}", "unexpected_status")
            yield self._chunks(response)

    async def _fetch(
        self, method: str, ref: BlobRef, authorization: str, extra: dict[str, str]
    ) -> aiohttp.ClientResponse:
        """The registry's answer, or its storage's when it redirects (without our token)."""
        path = f"/v2/{ref.name}/blobs/{ref.digest}"
        # A HEAD is blobgate's own question (short timeout); a GET relays bytes.
        send = self._upstream.check if method == "HEAD" else self._upstream.request
        response = await send(method, path, headers={"Authorization": authorization, **extra})
        if response.status not in _REDIRECTS:
            return response
        location = response.headers.get("Location", "")
        response.release()
        target = self._upstream.url(path).join(URL(location, encoded=True))
        return await send(method, target, headers=extra)

    async def _chunks(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        # Pieces as they arrive: aiohttp's read buffer already bounds them, and joining
        # them into bigger chunks would copy every byte once more.
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(f"reading from the registry failed: {exc}",
                               type(exc).__name__) from exc
