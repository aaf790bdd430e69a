"""Configuration: frozen dataclasses per section, read from YAML plus environment overrides.

``load()`` builds the tree from a YAML mapping, applies ``BLOBGATE_<SECTION>_<KEY>``
variables (``BLOBGATE_STORAGE_S3_BUCKET`` for ``storage.s3.bucket``), and checks every
value. Any problem is a ``ConfigError`` naming the dotted key and why it is wrong.
Storage credentials never live here: they come from the standard AWS, Azure and Google
chains (environment, workload identity, instance roles).

The wing at the bottom of the house: the sections (``service``, ``storage``, ``redis``,
``admin``), the typed construction and checks behind them (``settings``), and the TLS
contexts built from them (``tls``). Every other part of blobgate may import it.

May import: ``errors``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blobgate.config import settings
from blobgate.config.admin import AdminConfig, ports
from blobgate.config.redis import RedisConfig
from blobgate.config.routing import FeedConfig, RouteRule, RoutingConfig
from blobgate.config.service import (
    ASYMMETRIC_ALGORITHMS,
    ApiConfig,
    AuditConfig,
    AuthConfig,
    ClientTLSConfig,
    LogConfig,
    MembershipConfig,
    MetricsConfig,
    ServerConfig,
    ServerTLSConfig,
    UpstreamConfig,
)
from blobgate.config.storage import (
    PRIMARY,
    SIGV4_MAX_EXPIRES_S,
    AzureConfig,
    CDNConfig,
    CopyConfig,
    GCSConfig,
    ProxyConfig,
    S3Config,
    StorageConfig,
)
from blobgate.config.tracing import TracingConfig
from blobgate.errors import ConfigError

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "PRIMARY",
    "SIGV4_MAX_EXPIRES_S",
    "AdminConfig",
    "ApiConfig",
    "AuditConfig",
    "AuthConfig",
    "AzureConfig",
    "CDNConfig",
    "ClientTLSConfig",
    "Config",
    "CopyConfig",
    "FeedConfig",
    "GCSConfig",
    "LogConfig",
    "MembershipConfig",
    "MetricsConfig",
    "ProxyConfig",
    "RedisConfig",
    "RouteRule",
    "RoutingConfig",
    "S3Config",
    "ServerConfig",
    "ServerTLSConfig",
    "StorageConfig",
    "TracingConfig",
    "UpstreamConfig",
    "load",
]


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    log: LogConfig = field(default_factory=LogConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)

    def __post_init__(self) -> None:
        workers = self.server.workers
        taken = {self.server.port}
        if self.metrics.enabled:
            taken |= set(ports(self.metrics.port, workers))
        if self.admin.enabled and not taken.isdisjoint(ports(self.admin.port, workers)):
            raise ConfigError("admin.port", (
                f"{self.admin.port} (one port per worker from there) meets server.port or "
                "the metrics ports; the admin listener needs ports of its own"))
        known = self.storage.locations
        for i, rule in enumerate(self.routing.rules):
            unknown = [name for name in rule.locations if name not in known]
            if unknown:
                raise ConfigError(f"routing.rules[{i}].locations",
                                  f"{unknown} not in storage.copies (known: {list(known)})")


def load(path: Path | None, environ: Mapping[str, str] = os.environ) -> Config:
    """Read ``path`` (if given), apply environment overrides, validate everything."""
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "the top level must be a mapping")
    settings.apply_environment(Config, raw, environ)
    return settings.build(Config, raw, "")

