"""The server span of each request, when tracing is on: one span per request, in the
client's trace (W3C ``traceparent``/``tracestate`` on the request), named after the route
template and never after a path: ``GET /v2/{name}/blobs/{digest}``, not one name per
digest. Its attributes are the request's decision (``decision``) read from the
``RequestInfo`` its handler left: route, outcome, reason, repository and digest (the
only attribute that holds one), the status, and whether blobgate's caches admitted the
token for the blob without asking anyone (``blobgate.admission``). Upload session ids,
queries and tokens never reach a span.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from blobgate.ops import tracing
from blobgate.ops.accesslog import INFO_KEY

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SERVED = frozenset({"redirect", "stream", "local", "url"})
_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
TEMPLATES = (
    (re.compile(r"/v2/?"), "/v2/"),
    (re.compile(r"/v2/_catalog"), "/v2/_catalog"),
    (re.compile(rf"/v2/{_NAME}/blobs/uploads/?"), "/v2/{name}/blobs/uploads/"),
    (re.compile(rf"/v2/{_NAME}/blobs/uploads/[^/]+"), "/v2/{name}/blobs/uploads/{uuid}"),
    (re.compile(rf"/v2/{_NAME}/blobs/[^/]+"), "/v2/{name}/blobs/{digest}"),
    (re.compile(rf"/v2/{_NAME}/manifests/[^/]+"), "/v2/{name}/manifests/{reference}"),
    (re.compile(rf"/v2/{_NAME}/tags/list"), "/v2/{name}/tags/list"),
    (re.compile(rf"/v2/{_NAME}/referrers/[^/]+"), "/v2/{name}/referrers/{digest}"),
    (re.compile(r"/api/v1/blobs/[^/]+/url"), "/api/v1/blobs/{digest}/url"),
    (re.compile(r"/api/v1/blobs/urls"), "/api/v1/blobs/urls"),
    (re.compile(r"/api/v2\.0/blobs/[^/]+/url"), "/api/v2.0/blobs/{digest}/url"),
)


PENDING = "HTTP"  # a span's name until its request is answered
BLOB_SPANS = {method: f"{method} /v2/{{name}}/blobs/{{digest}}" for method in ("GET", "HEAD")}


def route_template(path: str) -> str:
    """The route ``path`` (without its query) is an instance of, or ``other``."""
    for pattern, template in TEMPLATES:
        if pattern.fullmatch(path):
            return template
    return "other"


def span_name(method: str, path: str) -> str:
    """``METHOD template``: a name from a small, fixed set."""
    return f"{method if method in METHODS else 'HTTP'} {route_template(path)}"


def served(handler: Handler) -> Handler:
    """``handler``, each request in a server span when tracing is on; else ``handler``
    itself."""
    if not tracing.enabled():
        return handler
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tracer = tracing.tracer()

    async def traced(request: web.BaseRequest) -> web.StreamResponse:
        parent = propagate.extract(request.headers)
        with tracer.start_as_current_span(PENDING, context=parent, kind=SpanKind.SERVER,
                                          record_exception=False) as span:
            response = await handler(request)
            if span.is_recording():  # named only when it is kept
                info = request.get(INFO_KEY)
                name = BLOB_SPANS.get(request.method, "") if info and info.route == "blob" else ""
                name = name or span_name(request.method, request.raw_path.partition("?")[0])
                span.update_name(name)
                span.set_attribute("http.request.method", request.method)
                span.set_attribute("http.route", name.partition(" ")[2])
                span.set_attribute("http.response.status_code", response.status)
                if request.remote is not None:
                    span.set_attribute("client.address", request.remote)
                if info is not None:
                    span.set_attributes(_decided(info.route, info.outcome, info.reason))
                    if info.repository is not None:
                        span.set_attribute("blobgate.repository", info.repository)
                    if info.digest is not None:
                        span.set_attribute("blobgate.digest", info.digest)
                    noted = getattr(span, "attributes", None) or {}
                    if (info.route == "blob" and info.outcome in SERVED
                            and "blobgate.admission" not in noted):
                        span.set_attribute("blobgate.admission", "memory")
                if response.status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            return response

    return traced


def _decided(route: str, outcome: str, reason: str | None) -> dict[str, str]:
    attributes = {"blobgate.route": route, "blobgate.outcome": outcome}
    if reason is not None:
        attributes["blobgate.reason"] = reason
    return attributes
