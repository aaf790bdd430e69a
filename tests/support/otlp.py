"""A test OTLP/HTTP trace receiver, and an HTTP relay that stamps or records
``traceparent`` on the way through (an ingress that starts traces; a stand-in in front
of the real registry that notes what it was sent)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from blobgate.registry.proxy import HOP_BY_HOP

SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_SERVER


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it from OTLP protobuf."""

    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


@dataclass
class Receiver:
    """Decodes ``POST /v1/traces`` (``application/x-protobuf``) into ``spans``."""

    spans: list[ReceivedSpan] = field(default_factory=list)

    async def traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource in export.resource_spans:
            service = next(_value(a.value) for a in resource.resource.attributes
                           if a.key == "service.name")
            for scope in resource.scope_spans:
                self.spans += [ReceivedSpan(
                    service, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name,
                    s.kind, {a.key: _value(a.value) for a in s.attributes},
                ) for s in scope.spans]
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self.traces)
        return app


@dataclass(frozen=True)
class Relayed:
    """A request the relay passed on: method, raw path, and its ``traceparent``."""

    method: str
    path: str
    traceparent: str | None


def new_traceparent() -> str:
    """A sampled W3C ``traceparent`` with a fresh trace id and span id."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@dataclass
class Relay:
    """Relays every request to ``target`` (bodies whole, redirects not followed),
    recording each; ``stamp`` gives a request a fresh ``traceparent`` first."""

    target: str
    stamp: bool = False
    seen: list[Relayed] = field(default_factory=list)

    async def relay(self, request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict((k, v) for k, v in request.headers.items()
                              if k.lower() not in HOP_BY_HOP | {"host", "content-length"})
        if self.stamp:
            headers["traceparent"] = new_traceparent()
        self.seen.append(Relayed(request.method, request.raw_path, headers.get("traceparent")))
        body = await request.read()
        async with aiohttp.ClientSession(auto_decompress=False) as session, session.request(
                request.method, self.target + request.raw_path, headers=headers,
                data=body if body else None, allow_redirects=False) as answer:
            data = await answer.read()
            out = CIMultiDict((k, v) for k, v in answer.headers.items()
                              if k.lower() not in HOP_BY_HOP | {"content-length"})
            response = web.StreamResponse(status=answer.status, headers=out)
            if answer.content_length is not None:  # a HEAD's too
                response.content_length = answer.content_length
            await response.prepare(request)
            if request.method != "HEAD":
                await response.write(data)
            await response.write_eof()
            return response

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self.relay)
        return app
