"""Configuration of OpenTelemetry tracing (``tracing:``).

Only the switch lives here: where spans go, the service name, resource attributes and
sampling are the standard ``OTEL_*`` variables every OpenTelemetry SDK reads
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``), so blobgate is pointed at a
collector exactly as Harbor and distribution are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TracingConfig:
    """Traces of every request's decision over OTLP/HTTP; off unless ``enabled``
    (``BLOBGATE_TRACING_ENABLED=true``). Off costs the request path nothing."""

    enabled: bool = False
