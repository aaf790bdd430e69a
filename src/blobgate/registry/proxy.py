"""The transparent pass-through: everything that is not a servable blob goes upstream.

Method, path (still percent-encoded), query, headers and bodies are relayed as they
are, streamed in both directions so a 1 GiB upload or download never sits in memory (a
body that goes quiet for ``server.client_body_timeout_s`` ends the request: ``bodies``).
Hop-by-hop headers are dropped, ``X-Forwarded-*`` added, and an absolute ``Location``
pointing at the upstream's own origin is rewritten to the origin the client used, so
upload sessions keep working through the gateway. Nothing is re-encoded. A ``GET`` or
``HEAD`` the registry could not be reached for (a rolling restart) is asked once more a
second later, before the client is told ``502``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from blobgate.errors import RegistryError, TargetUnsupported, UpstreamUnavailable
from blobgate.registry.bodies import ClientBody
from blobgate.registry.upstream import Upstream

log = logging.getLogger(__name__)

RETRIED = frozenset({"GET", "HEAD"})  # asked once more when the registry was unreachable
RETRY_AFTER_S = 1.0

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def request_target(request: web.BaseRequest) -> str:
    """The path and query the request names, also when it came in absolute form."""
    raw = request.raw_path
    if raw.startswith("/"):
        return raw
    parts = urlsplit(raw)
    if parts.scheme in ("http", "https") and parts.path.startswith("/"):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    raise TargetUnsupported("request target not supported", {"target": raw[:100]})


def cut_short(
    request: web.BaseRequest, response: web.StreamResponse, why: str
) -> web.StreamResponse:
    """End a response that started but cannot be completed by resetting the connection,
    so the client sees a broken transfer, never a clean short body."""
    log.warning("cutting the connection mid-response: %s", why)
    if request.transport is not None:
        request.transport.abort()
    return response


def _droppable(headers: CIMultiDict[str] | CIMultiDictProxy[str]) -> frozenset[str]:
    """Hop-by-hop headers plus any that ``Connection`` names."""
    listed = {t.strip().lower() for v in headers.getall("Connection", []) for t in v.split(",")}
    return HOP_BY_HOP | listed


def client_host_header(request: web.BaseRequest) -> str:
    """The host the client used, as sent: an ingress's X-Forwarded-Host, else Host."""
    return request.headers.get("X-Forwarded-Host", request.host)


def first_forwarded(value: str) -> str:
    """The first entry of a forwarded header (the one the client-most proxy set)."""
    return value.split(",")[0].strip()


def client_origin(request: web.BaseRequest) -> tuple[str, str]:
    """Scheme and host as the client sees them (honouring an ingress's X-Forwarded-*)."""
    proto = first_forwarded(request.headers.get("X-Forwarded-Proto", request.scheme))
    return proto, first_forwarded(client_host_header(request))


def request_headers(request: web.BaseRequest) -> CIMultiDict[str]:
    """The headers to send upstream for ``request``."""
    drop = _droppable(request.headers) | {"host"}
    out = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in drop)
    peer = request.remote or "unknown"
    prior = request.headers.get("X-Forwarded-For")
    out["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    proto, host = client_origin(request)
    out["X-Forwarded-Proto"] = proto
    out["X-Forwarded-Host"] = host
    return out


def response_headers(
    upstream_headers: CIMultiDictProxy[str], request: web.BaseRequest, upstream: Upstream
) -> CIMultiDict[str]:
    """The headers to send the client, with an upstream-origin ``Location`` made client-side."""
    drop = _droppable(upstream_headers)
    out = CIMultiDict((k, v) for k, v in upstream_headers.items() if k.lower() not in drop)
    location = out.get("Location")
    if location is not None:
        target = URL(location, encoded=True)
        if target.is_absolute() and target.origin() == upstream.origin:
            proto, host = client_origin(request)
            out["Location"] = str(URL(f"{proto}://{host}", encoded=True).join(target.relative()))
    return out


class BodyObserver(Protocol):
    """Sees a copy of a small upstream response body once it has reached the client."""

    limit: int

    def wants(self, response: aiohttp.ClientResponse) -> bool:
        """Whether to keep a copy of this response's body (at most ``limit`` bytes)."""
        ...

    def observe(self, body: bytes) -> None:
        """Called with the whole body after the client got it."""
        ...


async def forward(
    request: web.BaseRequest, upstream: Upstream, observer: BodyObserver | None = None
) -> web.StreamResponse:
    """Relay ``request`` upstream, within one of the relay pool's places, and stream the
    answer back (a copy to ``observer``)."""
    async with upstream.slot():
        return await _relay(request, upstream, observer)


async def _ask(request: web.BaseRequest, upstream: Upstream, body: ClientBody | None
               ) -> aiohttp.ClientResponse:
    """The registry's answer to ``request``. A ``GET`` or ``HEAD`` without a body that
    could not reach the registry (a restart: refused, or closed before it answered) is
    sent once more after ``RETRY_AFTER_S``: nothing was sent that could have taken effect."""
    send = upstream.request
    target, headers = request_target(request), request_headers(request)
    try:
        return await send(request.method, target, headers=headers, data=body)
    except UpstreamUnavailable:
        if body is not None or request.method not in RETRIED:
            raise
    log.info("registry unreachable for %s; asking once more in %ss", request.method,
             RETRY_AFTER_S)
    await asyncio.sleep(RETRY_AFTER_S)
    return await send(request.method, target, headers=headers)


async def _relay(
    request: web.BaseRequest, upstream: Upstream, observer: BodyObserver | None
) -> web.StreamResponse:
    body = ClientBody(request, upstream.client_body_timeout_s) if request.body_exists else None
    try:
        upstream_response = await _ask(request, upstream, body)
    except RegistryError:
        if body is not None and body.timed_out is not None:
            raise body.timed_out from None  # the client went quiet, not the registry
        raise
    async with upstream_response:
        response = web.StreamResponse(
            status=upstream_response.status,
            reason=upstream_response.reason,
            headers=response_headers(upstream_response.headers, request, upstream),
        )
        await response.prepare(request)
        keep = observer is not None and observer.wants(upstream_response)
        copy = bytearray()
        try:
            async for chunk in upstream_response.content.iter_any():
                upstream.stats.streamed_bytes += len(chunk)
                await response.write(chunk)
                if keep and observer is not None:
                    copy += chunk
                    keep = len(copy) <= observer.limit
        except (aiohttp.ClientError, TimeoutError) as exc:
            return cut_short(request, response, f"upstream broke off: {type(exc).__name__}")
        await response.write_eof()
        if keep and observer is not None:
            observer.observe(bytes(copy))
        return response
