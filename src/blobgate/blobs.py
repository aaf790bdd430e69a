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

from blobgate.auth.pulls import Pull
from blobgate.backends.contract import BlobSource, Presigner
from blobgate.backends.urls import URLCache
from blobgate.errors import NotInStorage, RegistryError, StorageError, StorageUnchecked
from blobgate.expiring import ExpiringCache
from blobgate.gate import Denied, Gate
from blobgate.ops.accesslog import INFO_KEY, RequestInfo
from blobgate.ops.metrics import Stats
from blobgate.reference import BlobRef, Digest
from blobgate.registry.membership import Member
from blobgate.registry.proxy import client_host_header, first_forwarded, forward
from blobgate.registry.upstream import Upstream
from blobgate.routing import Network, RoutingPolicy, client_address, in_networks
from blobgate.stream import API_VERSION, RangeNotSatisfiable, parse_range, serve
from blobgate.stream import not_satisfiable as range_not_satisfiable

log = logging.getLogger(__name__)


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
        """Answer a blob GET or HEAD."""
        info = RequestInfo("blob", "passthrough", ref.name, ref.digest)
        request[INFO_KEY] = info
        authorization = request.headers.getall("Authorization", [])
        grant = self.gate.verifier.grant(authorization)
        if grant is None or ref.name not in grant.pullable:
            return await self._pass(request, info, "denied")
        info.user = grant.subject
        member = self.gate.known(ref, grant)  # a warm request needs no awaiting
        if member is None:
            pull = Pull(authorization[0], grant, ref.name, "blobs")
            try:
                admitted = await self.gate.admit(ref, authorization[0], grant)
            except RegistryError as exc:
                self._fell_back("check_failed", exc)
                return await self._pass(request, info, "passthrough", pull)
            if isinstance(admitted, Denied):
                return await self._pass(request, info, admitted.outcome, pull)
            member = admitted
        if request.method == "HEAD":
            return await self._head(request, info, ref, member, authorization[0])
        urls = self._redirect_urls(request, ref)
        if urls is not None:
            try:
                signed = await urls.url_for(ref.digest)
            except (NotInStorage, StorageUnchecked) as exc:  # never a redirect on faith
                self._fell_back("not_in_storage" if isinstance(exc, NotInStorage)
                                else "storage_unchecked", exc)
                return await self._pass(request, info, "passthrough")
            except StorageError as exc:
                self.stats.presign_failures[urls.presigner.name, exc.reason] += 1
                self._fell_back("presign_failed", exc)
            else:
                info.outcome = "redirect"
                self.stats.offloaded_bytes[urls.presigner.name] += signed.size or 0
                return web.Response(status=307, headers={
                    "Location": signed.url,
                    "Docker-Content-Digest": ref.digest,
                    "Docker-Distribution-Api-Version": "registry/2.0",
                })
        return await self._stream(request, info, ref, member, authorization[0])

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

    def _redirect_urls(self, request: web.BaseRequest, ref: BlobRef) -> URLCache | None:
        """The URLs to redirect this GET to, or ``None`` when it is to be streamed."""
        if self.urls is None or self.policy.decide(request, ref.name) != "redirect":
            return None
        if self._shares_gateway_host(request):
            self.stats.fallbacks["gateway_host"] += 1
            return None
        return self._urls_for(request)

    async def _stream(
        self, request: web.BaseRequest, info: RequestInfo, ref: BlobRef, member: Member,
        authorization: str,
    ) -> web.StreamResponse:
        try:
            size = member.size if member.size is not None else await self.learn_size(
                ref, authorization
            )
            span = parse_range(request.headers.get("Range"), size)
        except RangeNotSatisfiable:
            info.outcome = "stream"
            return range_not_satisfiable(ref, size)
        except (StorageError, RegistryError) as exc:
            self._fell_back("size_unknown", exc)
            return await self._pass(request, info, "passthrough")
        info.outcome = "stream"
        try:
            return await serve(request, ref, span, self.source, authorization, self.stats)
        except (StorageError, RegistryError) as exc:  # before the first byte was sent
            self._fell_back("stream_failed", exc)
            return await self._pass(request, info, "passthrough")

    async def _pass(
        self, request: web.BaseRequest, info: RequestInfo, outcome: str,
        pull: Pull | None = None,
    ) -> web.StreamResponse:
        """Let the registry answer (and take its answer as its verdict on ``pull``'s token)."""
        info.outcome = outcome
        response = await forward(request, self.upstream)
        if pull is not None:
            self.gate.learn(pull, response.status)
        return response

    def _fell_back(self, reason: str, exc: Exception) -> None:
        """Count a fallback; log each distinct cause once."""
        self.stats.fallbacks[reason] += 1
        cause = f"{reason}:{type(exc).__name__}:{getattr(exc, 'reason', '')}"
        if cause not in self._logged_causes:
            self._logged_causes.add(cause)
            # A pull-through cache misses each blob once: expected, not a warning.
            level = logging.INFO if reason == "not_in_storage" else logging.WARNING
            log.log(level, "falling back (%s): %s", reason, exc)

    async def _head(
        self, request: web.BaseRequest, info: RequestInfo, ref: BlobRef, member: Member,
        authorization: str,
    ) -> web.StreamResponse:
        size = member.size
        if size is None:
            try:
                size = await self.learn_size(ref, authorization)
            except (StorageError, RegistryError) as exc:
                self._fell_back("size_unknown", exc)
                return await self._pass(request, info, "passthrough")
        info.outcome = "local"
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
        return response

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
            host = first_forwarded(client_host).rsplit(":", 1)[0].lower()
            verdict = self.presign_host == host or self.presign_host.endswith("." + host)
            if len(self._host_verdicts) < 1024:  # clients choose Host: keep this bounded
                self._host_verdicts[client_host] = verdict
        return verdict
