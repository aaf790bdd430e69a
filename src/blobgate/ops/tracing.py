"""OpenTelemetry traces of what blobgate did for a request, when ``tracing.enabled``.

Off (the default) costs the request path nothing: the SDK is never imported, the
gateway serves its plain dispatcher, and ``step``, ``note`` and ``propagate`` (called
only where blobgate is about to wait on the network anyway) return at once, ``step``
with one shared do-nothing context.

On, ``traces`` (a cleanup context of the gateway application, so each worker process
builds its own after the fork) sets up a tracer provider from the standard variables:
``OTEL_EXPORTER_OTLP_ENDPOINT`` (OTLP/HTTP, default ``http://localhost:4318``),
``OTEL_SERVICE_NAME`` (default ``blobgate``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_BSP_*``, and
``OTEL_PROPAGATORS`` (W3C ``traceparent``/``tracestate`` and baggage by default). Spans
go out in batches from the SDK's own thread, and what is queued is flushed at shutdown.
``served`` (``traced``) opens each request's server span from the client's
``traceparent``; ``step`` opens a child span for a unit of work; ``propagate`` puts the
current span's context on every request sent to the registry, so its spans (distribution
v3, Harbor) join the same trace.

The tracer lives in this module, not in the application: the steps are deep in the
gate, the caches and the byte streamers, which need no tracer handed to them. One
gateway application per process traces (the last one started).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, MutableMapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

SERVICE_NAME = "blobgate"
_OFF: AbstractContextManager[None] = contextlib.nullcontext()
_tracer: Tracer | None = None


def enabled() -> bool:
    """Whether spans are being made."""
    return _tracer is not None


def tracer() -> Tracer:
    """The tracer (only while enabled)."""
    assert _tracer is not None, "tracing.tracer() is for a gateway that traces"
    return _tracer


def step(name: str, attributes: dict[str, str] | None = None) -> AbstractContextManager[Any]:
    """A child span of the current one around a step (nothing when tracing is off)."""
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span(name, attributes=attributes)


def note(key: str, value: str | bool | int) -> None:
    """Set an attribute on the current span (nothing when tracing is off)."""
    if _tracer is not None:
        from opentelemetry import trace

        trace.get_current_span().set_attribute(key, value)


def propagate(kwargs: dict[str, Any]) -> None:
    """Put the current trace context (``traceparent``, ``tracestate``, baggage) on the
    ``headers`` of an outgoing request's keyword arguments (nothing when off)."""
    if _tracer is None:
        return
    from opentelemetry import propagate as otel_propagate

    headers: MutableMapping[str, str] | None = kwargs.get("headers")
    if headers is None:
        headers = kwargs["headers"] = {}
    otel_propagate.inject(headers)


def _provider() -> Any:
    """A tracer provider configured by the ``OTEL_*`` variables, exporting OTLP/HTTP."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", "")
    if not named:
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


async def traces(_app: web.Application) -> AsyncIterator[None]:
    """Trace while the application runs (a ``cleanup_ctx`` entry); flush at the end."""
    global _tracer
    from blobgate import __version__

    provider = _provider()
    _tracer = provider.get_tracer("blobgate", __version__)
    log.info("tracing on: OTLP/HTTP to %s", os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")))
    try:
        yield
    finally:
        _tracer = None
        provider.shutdown()
