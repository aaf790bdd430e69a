"""The blob path: GET/HEAD ``/v2/<name>/blobs/<digest>``, and nothing else.

parse → authorize → admit (``gate``: the registry accepted this token for the
repository, and the blob is in it) → HEAD: answer locally | GET: 307 to a cached
presigned URL, or stream the bytes when policy says so or no URL can be had. Whenever
blobgate cannot vouch for the request (no or invalid token, no pull grant on exactly
this repository, a token the registry refused, blob not in it, the registry could not
be asked) the request goes to the registry unchanged, so clients always get the
registry's own answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from blobgate.accesslog import INFO_KEY, RequestInfo
from blobgate.auth import Grant
from blobgate.backends.contract import BlobSource, Presigner
from blobgate.cache import URLCache
from blobgate.decision import (
    CHECK_FAILED,
    GATEWAY_HOST,
    LOCAL_HEAD,
    NO_PRESIGNER,
    NOT_IN_STORAGE,
    PRESIGN_FAILED,
    REDIRECTS,
    SIZE_UNKNOWN,
    STORAGE_UNCHECKED,
    STREAM_FAILED,
    Decision,
    denial,
)
from blobgate.errors import NotInStorage, RegistryError, StorageError, StorageUnchecked
from blobgate.expiring import ExpiringCache
from blobgate.gate import Denied, Gate, Pull
from blobgate.membership import Member
from blobgate.metrics import Stats
from blobgate.proxy import client_host_header, first_forwarded, forward
from blobgate.reference import BlobRef, Digest
from blobgate.routing import Network, RoutingPolicy, client_address, in_networks
from blobgate.stream import API_VERSION, RangeNotSatisfiable, parse_range, serve
from blobgate.stream import not_satisfiable as range_not_satisfiable
from blobgate.tracing import note, step
from blobgate.upstream import Upstream

log = logging.getLogger(__name__)

Answer = tuple[web.StreamResponse, Decision]
"""A response, and what was decided."""


def under_host(presign_host: str, client_host: str) -> bool:
    """True when ``presign_host`` is the host of ``client_host`` (a Host or forwarded
    host header) or under it."""
    host = first_forwarded(client_host).rsplit(":", 1)[0].lower()
    return presign_host == host or presign_host.endswith("." + host)


@dataclass
class BlobService:
    """Everything the blob path needs, built once at start-up.

    ``urls`` is ``None`` when the backend cannot presign (the registry streams).
    """

    gate: Gate
    source: BlobSource
    urls: URLCache | None
    cdn_urls: URLCache | None
    cdn_bypass: tuple[Network, ...]
    policy: RoutingPolicy
    upstream: Upstream
    stats: Stats
    presign_host: str
    allow_gateway_host: bool
    _logged_causes: set[str] = field(default_factory=set)
    _host_verdicts: dict[str, bool] = field(default_factory=dict)

    async def handle(self, request: web.BaseRequest, ref: BlobRef) -> web.StreamResponse:
        """Answer a blob GET or HEAD; its ``RequestInfo`` carries the decision."""
        info = RequestInfo("blob", "passthrough", ref.name, ref.digest)
        request[INFO_KEY] = info  # a request that fails on the way is still a blob's
        authorization = request.headers.getall("Authorization", [])
        grant = self.gate.verifier.grant(authorization)
        if grant is None or ref.name not in grant.pullable:
            response, decision = await self._pass(request, denial(authorization, grant))
        else:
            info.user = grant.subject
            response, decision = await self._answer(request, ref, authorization[0], grant)
        info.outcome, info.reason = decision
        return response

    async def _answer(self, request: web.BaseRequest, ref: BlobRef, authorization: str,
                      grant: Grant) -> Answer:
        """The answer for a token that grants pull on ``ref.name``."""
        member = self.gate.known(ref, grant)  # a warm request needs no awaiting
        if member is None:
            pull = Pull(authorization, grant, ref.name, "blobs")
            try:
                with step("blobgate.admit"):
                    note("blobgate.admission", "checked")
                    admitted = await self.gate.admit(ref, authorization, grant)
            except RegistryError as exc:
                self._fell_back("check_failed", exc)
                return await self._pass(request, CHECK_FAILED, pull)
            if isinstance(admitted, Denied):
                return await self._pass(request, admitted.decision, pull)
            member = admitted
        if request.method == "HEAD":
            return await self._head(request, ref, member, authorization)
        urls, streaming = self._redirect_urls(request, ref)
        if urls is not None:
            try:
                signed, tier = await urls.answer(ref.digest)
            except (NotInStorage, StorageUnchecked) as exc:  # never a redirect on faith
                absent = isinstance(exc, NotInStorage)
                self._fell_back("not_in_storage" if absent else "storage_unchecked", exc)
                return await self._pass(request, NOT_IN_STORAGE if absent
                                        else STORAGE_UNCHECKED)
            except StorageError as exc:
                self.stats.presign_failures[urls.presigner.name, exc.reason] += 1
                self._fell_back("presign_failed", exc)
                streaming = PRESIGN_FAILED
            else:
                self.stats.offloaded_bytes[urls.presigner.name] += signed.size or 0
                return web.Response(status=307, headers={
                    "Location": signed.url,
                    "Docker-Content-Digest": ref.digest,
                    "Docker-Distribution-Api-Version": "registry/2.0",
                }), REDIRECTS[tier]
        return await self._stream(request, ref, member, authorization, streaming)

    def _urls_for(self, request: web.BaseRequest) -> URLCache | None:
        """CDN URLs, unless the client is in a bypass network; else the store's own."""
        if self.cdn_urls is None:
            return self.urls
        address = client_address(request, self.policy.trusted)
        return self.urls if in_networks(address, self.cdn_bypass) else self.cdn_urls

    async def stored_size(self, digest: Digest) -> int:
        """The size of the blob's object in storage (``NotInStorage`` when it is not there):
        the URL cache's answer, so redirects and the URL API share one look per digest."""
        assert self.urls is not None, "only a backend that presigns has objects to look at"
        signed = await self.urls.url_for(digest)
        return signed.size if signed.size is not None else await self.urls.presence.size(digest)

    def presigner_for(self, request: web.BaseRequest, custom: bool) -> Presigner:
        """The signer the URL API uses for this client (the store's own when response
        headers are to be signed: a CDN's canned policy cannot)."""
        urls = self.urls if custom else self._urls_for(request)
        assert urls is not None, "the URL API needs a backend that presigns"
        return urls.presigner

    def _redirect_urls(self, request: web.BaseRequest, ref: BlobRef
                       ) -> tuple[URLCache | None, Decision]:
        """The URLs to redirect this GET to, or ``None`` and why it is to be streamed."""
        if self.urls is None:
            return None, NO_PRESIGNER
        streaming = self.policy.streams(request, ref.name)
        if streaming is not None:
            return None, streaming
        if self._shares_gateway_host(request):
            self.stats.fallbacks["gateway_host"] += 1
            return None, GATEWAY_HOST
        return self._urls_for(request), NO_PRESIGNER

    async def _stream(self, request: web.BaseRequest, ref: BlobRef, member: Member,
                      authorization: str, why: Decision) -> Answer:
        """Stream the blob's bytes (``why``: the decision that chose streaming)."""
        try:
            size = member.size if member.size is not None else await self.learn_size(
                ref, authorization
            )
            span = parse_range(request.headers.get("Range"), size)
        except RangeNotSatisfiable:
            return range_not_satisfiable(ref, size), why
        except (StorageError, RegistryError) as exc:
            self._fell_back("size_unknown", exc)
            return await self._pass(request, SIZE_UNKNOWN)
        try:
            with step("blobgate.stream", {"blobgate.reason": why.reason}):
                return await serve(request, ref, span, self.source, authorization,
                                   self.stats), why
        except (StorageError, RegistryError) as exc:  # before the first byte was sent
            self._fell_back("stream_failed", exc)
            return await self._pass(request, STREAM_FAILED)

    async def _pass(self, request: web.BaseRequest, why: Decision, pull: Pull | None = None
                    ) -> Answer:
        """Let the registry answer (and take its answer as its verdict on ``pull``'s token)."""
        with step("blobgate.passthrough", {"blobgate.reason": why.reason}):
            response = await forward(request, self.upstream)
        if pull is not None:
            self.gate.learn(pull, response.status)
        return response, why

    def _fell_back(self, reason: str, exc: Exception) -> None:
        """Count a fallback; log each distinct cause once."""
        self.stats.fallbacks[reason] += 1
        cause = f"{reason}:{type(exc).__name__}:{getattr(exc, 'reason', '')}"
        if cause not in self._logged_causes:
            self._logged_causes.add(cause)
            # A pull-through cache misses each blob once: expected, not a warning.
            level = logging.INFO if reason == "not_in_storage" else logging.WARNING
            log.log(level, "falling back (%s): %s", reason, exc)

    async def _head(self, request: web.BaseRequest, ref: BlobRef, member: Member,
                    authorization: str) -> Answer:
        size = member.size
        if size is None:
            try:
                size = await self.learn_size(ref, authorization)
            except (StorageError, RegistryError) as exc:
                self._fell_back("size_unknown", exc)
                return await self._pass(request, SIZE_UNKNOWN)
        response = web.StreamResponse(
            status=200,
            headers={
                "Docker-Content-Digest": ref.digest,
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
                **API_VERSION,
            },
        )
        response.content_length = size
        await response.prepare(request)
        return response, LOCAL_HEAD

    def url_caches(self) -> tuple[URLCache, ...]:
        """The URL caches in use (S3, and CloudFront when configured)."""
        return tuple(urls for urls in (self.urls, self.cdn_urls) if urls is not None)

    def forget(self, ref: BlobRef) -> None:
        """Drop the cached membership of ``ref`` and the cached URLs of its digest (here)."""
        self.gate.membership.cache.pop(ref)
        for urls in self.url_caches():
            urls.cache.pop(ref.digest)
            urls.presence.missing.pop(ref.digest)

    def flush(self) -> dict[str, int]:
        """Drop every cached answer (here); returns how many entries each cache held."""
        caches: dict[str, ExpiringCache[Any, Any]] = {
            "token": self.gate.verifier.cache, "membership": self.gate.membership.cache,
            "confirmation": self.gate.confirmations.cache}
        for urls in self.url_caches():
            caches[urls.name] = urls.cache
            caches["not_in_storage"] = urls.presence.missing
        sizes = {name: len(cache) for name, cache in caches.items()}
        for cache in caches.values():
            cache.clear()
        return sizes

    async def learn_size(self, ref: BlobRef, authorization: str) -> int:
        """The blob's size from its source, remembered with its membership."""
        size = await self.source.size(ref, authorization)
        self.gate.membership.remember(ref, Member(size))
        return size

    def _shares_gateway_host(self, request: web.BaseRequest) -> bool:
        """True when the client's host is the presign host or a parent domain of it.

        Go clients then forward ``Authorization`` on the redirect and storage rejects the
        request (S3: "Only one auth mechanism allowed"), so blobgate streams instead.
        """
        if self.allow_gateway_host:
            return False
        client_host = client_host_header(request)  # verdicts are kept per header value
        verdict = self._host_verdicts.get(client_host)
        if verdict is None:
            verdict = under_host(self.presign_host, client_host)
            if len(self._host_verdicts) < 1024:  # clients choose Host: keep this bounded
                self._host_verdicts[client_host] = verdict
        return verdict
