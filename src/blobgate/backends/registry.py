"""The registry itself as the source of blob bytes (``storage.backend: proxy``).

For deployments without S3 access (filesystem-backed registries, storage reachable only
by the registry): blobgate asks the registry with the client's credentials and, when
the registry redirects to its storage, follows that one redirect itself, without the
client's ``Authorization``, on a session of its own whose resolver refuses addresses a
redirect must not reach, and only where ``redirects.RedirectPolicy`` allows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from yarl import URL

from blobgate.backends.contract import Span
from blobgate.backends.redirects import ForbiddenAddress, PublicResolver, RedirectPolicy
from blobgate.config import ProxyConfig
from blobgate.errors import StorageError
from blobgate.reference import BlobRef
from blobgate.registry.upstream import Upstream, new_session

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@asynccontextmanager
async def open_registry(upstream: Upstream, cfg: ProxyConfig) -> AsyncIterator[RegistryBlobs]:
    """The registry backend, with its session for storage redirects open meanwhile."""
    resolver = None if cfg.allow_private_redirects else PublicResolver()
    session = new_session(upstream.cfg, upstream.cfg.max_connections, resolver)
    try:
        yield RegistryBlobs(upstream, session, RedirectPolicy(cfg, upstream.origin,
                                                              upstream.stats))
    finally:
        await session.close()
        if resolver is not None:
            await resolver.close()


class RegistryBlobs:
    """Blob sizes and bytes fetched from the upstream registry."""

    def __init__(self, upstream: Upstream, storage: aiohttp.ClientSession,
                 policy: RedirectPolicy) -> None:
        self._upstream = upstream
        self._storage = storage
        self._policy = policy

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
        return await self._follow(method, self._upstream.url(path), location, extra)

    async def _follow(self, method: str, base: URL, location: str, extra: dict[str, str]
                      ) -> aiohttp.ClientResponse:
        """The storage's answer at ``location``, not followed any further."""
        target = self._policy.target(base, location)
        timeout = self._upstream.check_timeout if method == "HEAD" else self._storage.timeout
        try:
            return await self._storage.request(method, target, headers=extra, timeout=timeout,
                                               allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if isinstance(getattr(exc, "os_error", None), ForbiddenAddress):
                self._policy.refuse("address", str(target.origin()))
            raise StorageError(f"the registry's storage at {target.origin()} did not answer: "
                               f"{type(exc).__name__}", type(exc).__name__) from None

    async def _chunks(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        # Pieces as they arrive: aiohttp's read buffer already bounds them, and joining
        # them into bigger chunks would copy every byte once more.
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(f"reading from the registry failed: {exc}",
                               type(exc).__name__) from exc
