"""The blob path: GET/HEAD ``/v2/<name>/blobs/<digest>``, and nothing else.

parse → authorize → membership → (HEAD: answer locally | GET: 307 to a cached presigned
URL). Whenever blobgate cannot vouch for the request (no or invalid token, no pull
grant on exactly this repository, blob not in it, storage trouble) the request goes
to the registry unchanged, so clients always get the registry's own answer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiohttp import web

from blobgate.accesslog import info_of
from blobgate.auth import TokenVerifier, bearer_token
from blobgate.cache import URLCache
from blobgate.errors import StorageError
from blobgate.membership import CachedMembership, Member
from blobgate.metrics import Stats
from blobgate.proxy import client_origin, forward
from blobgate.reference import BlobRef, parse_blob
from blobgate.storage import S3Storage
from blobgate.upstream import Upstream

log = logging.getLogger(__name__)

API_VERSION = {"Docker-Distribution-Api-Version": "registry/2.0"}


@dataclass
class BlobService:
    """Everything the blob path needs, built once at start-up."""

    verifier: TokenVerifier
    membership: CachedMembership
    urls: URLCache
    storage: S3Storage
    upstream: Upstream
    stats: Stats
    presign_host: str
    allow_gateway_host: bool
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(
        self, request: web.Request, raw_name: str, raw_digest: str
    ) -> web.StreamResponse:
        """Answer a blob GET or HEAD."""
        info = info_of(request)
        info.route = "blob"
        ref = parse_blob(raw_name, raw_digest)
        info.repository, info.digest = ref.name, str(ref.digest)
        authorization = request.headers.getall("Authorization", [])
        token = bearer_token(authorization)
        grant = self.verifier.verify(token) if token is not None else None
        if grant is None or not grant.can_pull(ref.name):
            return await self._pass(request, "denied")
        info.user = grant.subject
        member = await self.membership.check(ref, authorization[0])
        if member is None:
            return await self._pass(request, "not_found")
        if request.method == "HEAD":
            return await self._head(request, ref, member)
        if self._shares_gateway_host(request):
            return await self._pass(request, "passthrough", "gateway_host")
        try:
            signed = await self.urls.url_for(ref.digest)
        except StorageError as exc:
            log.warning("presign failed, the registry serves the blob: %s", exc)
            self.stats.presign_failures[exc.reason] += 1
            return await self._pass(request, "passthrough", "presign_failed")
        info.outcome = "redirect"
        self._count_offload(ref, member)
        headers = {"Location": signed.url, "Docker-Content-Digest": str(ref.digest), **API_VERSION}
        return web.Response(status=307, headers=headers)

    async def _pass(
        self, request: web.Request, outcome: str, fallback: str | None = None
    ) -> web.StreamResponse:
        """Let the registry answer; ``fallback`` names why a servable blob was not served."""
        info_of(request).outcome = outcome
        if fallback is not None:
            self.stats.fallbacks[fallback] += 1
        return await forward(request, self.upstream)

    async def _head(self, request: web.Request, ref: BlobRef, member: Member) -> web.StreamResponse:
        size = member.size
        if size is None:
            try:
                size = await self._learn_size(ref)
            except StorageError as exc:
                log.warning("blob size unknown, the registry answers the HEAD: %s", exc)
                return await self._pass(request, "passthrough", "size_unknown")
        info_of(request).outcome = "local"
        response = web.StreamResponse(
            status=200,
            headers={
                "Docker-Content-Digest": str(ref.digest),
                "Content-Type": "application/octet-stream",
                **API_VERSION,
            },
        )
        response.content_length = size
        await response.prepare(request)
        return response

    async def _learn_size(self, ref: BlobRef) -> int:
        size = await self.storage.blob_size(ref.digest)
        self.membership.remember(ref, Member(size))
        return size

    def _count_offload(self, ref: BlobRef, member: Member) -> None:
        """Add the blob's size to the offloaded bytes, learning it in the background if needed."""
        if member.size is not None:
            self.stats.offloaded_bytes += member.size
            return

        async def learn() -> None:
            try:
                size = await self._learn_size(ref)
            except StorageError as exc:
                log.info("size of a redirected blob unknown: %s", exc)
                return
            self.stats.offloaded_bytes += size  # not `+= await ...`: that reads before awaiting

        task = asyncio.create_task(learn())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _shares_gateway_host(self, request: web.Request) -> bool:
        """True when the client's host is the presign host or a parent domain of it.

        Go clients then forward ``Authorization`` on the redirect and S3 rejects the
        request ("Only one auth mechanism allowed"), so the registry serves instead.
        """
        if self.allow_gateway_host:
            return False
        host = (client_origin(request)[1].rsplit(":", 1)[0]).lower()
        shared = self.presign_host == host or self.presign_host.endswith("." + host)
        if shared:
            log.error("presign host %s is under the gateway host %s", self.presign_host, host)
        return shared
