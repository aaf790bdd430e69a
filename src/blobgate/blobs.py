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
from blobgate.auth.tokens import Grant
from blobgate.backends.contract import BlobSource, Presigner, SignedURL, URLOptions
from blobgate.backends.copies import Copies, missing_name, urls_for
from blobgate.backends.urls import URLCache
from blobgate.config import PRIMARY
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
from blobgate.gate import Denied, Gate
from blobgate.ops.accesslog import INFO_KEY, RequestInfo
from blobgate.ops.metrics import Stats
from blobgate.ops.tracing import note, step
from blobgate.reference import BlobRef, Digest
from blobgate.registry.membership import Member
from blobgate.registry.proxy import client_host_header, first_forwarded, forward
from blobgate.registry.upstream import Upstream
from blobgate.routing.policy import Address, Network, Route, RoutingPolicy, client_address
from blobgate.stream import API_VERSION, RangeNotSatisfiable, parse_range, serve
from blobgate.stream import not_satisfiable as range_not_satisfiable

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

    ``urls`` is ``None`` when the backend cannot presign (the registry streams);
    ``copies`` are the other stores a route may send a client to before the primary.
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
    copies: Copies = field(default_factory=lambda: Copies((), 0.0, Stats()))
    _logged_causes: set[str] = field(default_factory=set)
    _host_verdicts: dict[tuple[str, str], bool] = field(default_factory=dict)

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
        policy = self.policy
        address = (client_address(request, policy.trusted)
                   if policy.has_rules or self.cdn_urls is not None else None)
        route = policy.route(request, ref.name, address)
        why = route.stream or NO_PRESIGNER
        if route.stream is None and self.urls is not None:
            redirected = await self._redirect(request, ref, route, address)
            if not isinstance(redirected, Decision):
                return redirected
            why = redirected
        return await self._stream(request, ref, member, authorization, why)

    async def _redirect(self, request: web.BaseRequest, ref: BlobRef, route: Route,
                        address: Address | None) -> Answer | Decision:
        """A 307 to the first location of ``route`` holding the blob (the registry's
        answer when the primary lacks it), or why the bytes are to be streamed instead."""
        reason = route.reason
        if route.copies:
            found = await self.copies.first_holding(
                route.copies, ref.digest, address, lambda copy, _: not self._shares_gateway_host(
                    request, copy.host, copy.allow_gateway_host))
            if found is not None:
                name, urls, signed, tier = found
                label = reason if name == route.copies[0] else "fallback"
                return self._redirected(request, ref, signed, tier, name, label, urls)
            reason = "fallback"
        if self._shares_gateway_host(request, self.presign_host, self.allow_gateway_host):
            self.stats.fallbacks["gateway_host"] += 1
            return GATEWAY_HOST
        assert self.urls is not None, "only a backend that presigns redirects"
        urls = urls_for(self.urls, self.cdn_urls, self.cdn_bypass, address)
        try:
            signed, tier = await urls.answer(ref.digest)
        except (NotInStorage, StorageUnchecked) as exc:  # never a redirect on faith
            absent = isinstance(exc, NotInStorage)
            self._fell_back("not_in_storage" if absent else "storage_unchecked", exc)
            return await self._pass(request, NOT_IN_STORAGE if absent else STORAGE_UNCHECKED)
        except StorageError as exc:
            self.stats.presign_failures[urls.presigner.name, exc.reason] += 1
            self._fell_back("presign_failed", exc)
            return PRESIGN_FAILED
        return self._redirected(request, ref, signed, tier, PRIMARY, reason, urls)

    def _redirected(self, request: web.BaseRequest, ref: BlobRef, signed: SignedURL,
                    tier: str, location: str, reason: str, urls: URLCache) -> Answer:
        """The 307 to ``signed``, counted for ``location`` and the rule (or ``fallback``)
        that sent the client there; the decision names the URL cache tier that answered."""
        request[INFO_KEY].location = location
        self.stats.redirects[location, reason] += 1
        self.stats.offloaded_bytes[urls.presigner.name] += signed.size or 0
        return web.Response(status=307, headers={
            "Location": signed.url,
            "Docker-Content-Digest": ref.digest,
            "Docker-Distribution-Api-Version": "registry/2.0",
        }), REDIRECTS[tier]

    async def stored_at(self, request: web.BaseRequest, name: str, digest: Digest,
                        primary: Presigner, options: URLOptions) -> tuple[Presigner, int]:
        """Where the URL API signs a URL for this caller, chosen as a blob GET's redirect
        is: the first copy of the caller's route holding the blob that can sign for
        ``options.expires_s``, else ``primary`` (``NotInStorage`` when the store lacks
        the blob too; response headers are signed by the primary only); and the blob's
        size there. One look per digest and location, shared with redirects."""
        address = client_address(request, self.policy.trusted)
        route = self.policy.route(request, name, address)
        custom = options.filename is not None or options.cache_control is not None
        if route.copies and route.action == "redirect" and not custom:
            expires_s = options.expires_s or primary.default_expires_s
            found = await self.copies.first_holding(
                route.copies, digest, address,
                lambda _, urls: urls.presigner.max_expires_s() >= expires_s)
            if found is not None and found[2].size is not None:
                return found[1].presigner, found[2].size
        assert self.urls is not None, "only a backend that presigns has objects to look at"
        signed = await self.urls.url_for(digest)
        size = signed.size if signed.size is not None else await self.urls.presence.size(digest)
        return primary, size

    def presigner_for(self, request: web.BaseRequest, custom: bool) -> Presigner:
        """The primary's signer the URL API uses for this client (the store's own when
        response headers are to be signed: a CDN's canned policy cannot)."""
        assert self.urls is not None, "the URL API needs a backend that presigns"
        if custom or self.cdn_urls is None:
            return self.urls.presigner
        address = client_address(request, self.policy.trusted)
        return urls_for(self.urls, self.cdn_urls, self.cdn_bypass, address).presigner

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
        request[INFO_KEY].location = PRIMARY if self.urls is not None else None
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
        """The URL caches in use (the store's, a CDN's, and the copies')."""
        return (*(urls for urls in (self.urls, self.cdn_urls) if urls is not None),
                *self.copies.url_caches())

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
            caches[missing_name(urls)] = urls.presence.missing
        sizes = {name: len(cache) for name, cache in caches.items()}
        for cache in caches.values():
            cache.clear()
        return sizes

    async def learn_size(self, ref: BlobRef, authorization: str) -> int:
        """The blob's size from its source, remembered with its membership."""
        size = await self.source.size(ref, authorization)
        self.gate.membership.remember(ref, Member(size))
        return size

    def _shares_gateway_host(self, request: web.BaseRequest, presign_host: str,
                             allowed: bool) -> bool:
        """True when the client's host is ``presign_host`` or a parent domain of it.

        Go clients then forward ``Authorization`` on the redirect and storage rejects the
        request (S3: "Only one auth mechanism allowed"), so blobgate streams instead.
        """
        if allowed:
            return False
        key = (client_host_header(request), presign_host)  # verdicts kept per header value
        verdict = self._host_verdicts.get(key)
        if verdict is None:
            verdict = under_host(presign_host, key[0])
            if len(self._host_verdicts) < 1024:  # clients choose Host: keep this bounded
                self._host_verdicts[key] = verdict
        return verdict
