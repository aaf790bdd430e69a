"""Configuration: frozen dataclasses per section, read from YAML plus environment overrides.

``load()`` builds the tree from a YAML mapping, applies ``BLOBGATE_<SECTION>_<KEY>``
variables (``BLOBGATE_STORAGE_S3_BUCKET`` for ``storage.s3.bucket``), and checks every
value. Any problem is a ``ConfigError`` naming the dotted key and why it is wrong.
S3 credentials never live here: they come from the standard AWS chain.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blobgate import settings
from blobgate.errors import ConfigError
from blobgate.settings import check, check_url

SIGV4_MAX_EXPIRES_S = 7 * 24 * 3600
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")


@dataclass(frozen=True)
class ServerConfig:
    """Where blobgate listens, and the host names clients use to reach it."""

    host: str = "0.0.0.0"  # noqa: S104 - a gateway listens on all interfaces by default
    port: int = 5080
    public_hosts: tuple[str, ...] = ()
    shutdown_grace_s: float = 30.0
    workers: int = 1

    def __post_init__(self) -> None:
        check(1 <= self.port <= 65535, "port", "must be between 1 and 65535")
        check(self.shutdown_grace_s >= 0, "shutdown_grace_s", "must not be negative")
        check(1 <= self.workers <= 64, "workers", "must be between 1 and 64")


@dataclass(frozen=True)
class MetricsConfig:
    """The private listener for /metrics, /healthz and /readyz."""

    enabled: bool = True
    host: str = "0.0.0.0"  # noqa: S104 - scraped by Prometheus from other pods
    port: int = 9102

    def __post_init__(self) -> None:
        check(1 <= self.port <= 65535, "port", "must be between 1 and 65535")


@dataclass(frozen=True)
class UpstreamConfig:
    """The registry blobgate fronts."""

    url: str = "http://harbor-core:80"
    timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_connections: int = 256

    def __post_init__(self) -> None:
        check_url(self.url, "url")
        check(self.timeout_s > 0, "timeout_s", "must be positive")
        check(self.connect_timeout_s > 0, "connect_timeout_s", "must be positive")
        check(self.max_connections > 0, "max_connections", "must be positive")


@dataclass(frozen=True)
class AuthConfig:
    """How Bearer tokens from the registry's token service are verified."""

    issuer: str = "harbor-token-issuer"
    service: str = "harbor-registry"
    certificates: str = "/etc/blobgate/token.crt"
    leeway_s: int = 60
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS
    token_cache_size: int = 100_000
    reload_interval_s: float = 10.0

    def __post_init__(self) -> None:
        check(bool(self.issuer), "issuer", "must not be empty")
        check(self.reload_interval_s >= 0, "reload_interval_s", "must not be negative")
        check(bool(self.service), "service", "must not be empty")
        check(0 <= self.leeway_s <= 600, "leeway_s", "must be between 0 and 600")
        check(self.token_cache_size > 0, "token_cache_size", "must be positive")
        check(bool(self.algorithms), "algorithms", "must name at least one algorithm")
        for alg in self.algorithms:
            check(
                alg in ASYMMETRIC_ALGORITHMS,
                "algorithms",
                f"{alg!r} is not allowed; choose from {', '.join(ASYMMETRIC_ALGORITHMS)}",
            )


@dataclass(frozen=True)
class S3Config:
    """The bucket the registry stores blobs in, and how URLs to it are signed."""

    bucket: str = "registry"
    region: str = "us-east-1"
    endpoint_url: str | None = None
    public_endpoint_url: str | None = None
    rootdirectory: str = ""
    path_style: bool = True
    expires_s: int = 1200
    unsafe_allow_gateway_host: bool = False

    def __post_init__(self) -> None:
        check(bool(self.bucket), "bucket", "must not be empty")
        check(bool(self.region), "region", "must not be empty")
        if self.endpoint_url is not None:
            check_url(self.endpoint_url, "endpoint_url")
        if self.public_endpoint_url is not None:
            check_url(self.public_endpoint_url, "public_endpoint_url")
        check(
            60 <= self.expires_s <= SIGV4_MAX_EXPIRES_S,
            "expires_s",
            f"must be between 60 and {SIGV4_MAX_EXPIRES_S} (SigV4's 7-day limit)",
        )


@dataclass(frozen=True)
class StorageConfig:
    """Where blob bytes come from: S3 (redirect or stream), or the registry (stream only)."""

    backend: str = "s3"
    url_cache_size: int = 100_000
    stream_chunk_bytes: int = 1 << 20
    s3: S3Config = field(default_factory=S3Config)

    def __post_init__(self) -> None:
        check(self.backend in ("s3", "proxy"), "backend", "must be 's3' or 'proxy'")
        check(self.url_cache_size > 0, "url_cache_size", "must be positive")
        check(4096 <= self.stream_chunk_bytes <= 16 << 20, "stream_chunk_bytes",
              "must be between 4096 and 16777216")


def _check_networks(values: tuple[str, ...], key: str) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(key, f"{value!r} is not a network in CIDR notation") from None


@dataclass(frozen=True)
class RouteRule:
    """One routing rule: when all its given conditions match, ``action`` applies."""

    action: str
    networks: tuple[str, ...] = ()
    repositories: tuple[str, ...] = ()
    user_agents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self.action in ("redirect", "stream"), "action", "must be 'redirect' or 'stream'")
        check(bool(self.networks or self.repositories or self.user_agents), "action",
              "a rule needs at least one of networks, repositories, user_agents")
        _check_networks(self.networks, "networks")
        for pattern in self.user_agents:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError("user_agents", f"{pattern!r}: {exc}") from None


@dataclass(frozen=True)
class RoutingConfig:
    """Per request: redirect the client to storage, or stream the bytes through blobgate."""

    default: str = "redirect"
    trusted_proxies: tuple[str, ...] = ()
    rules: tuple[RouteRule, ...] = ()

    def __post_init__(self) -> None:
        check(self.default in ("redirect", "stream"), "default", "must be 'redirect' or 'stream'")
        _check_networks(self.trusted_proxies, "trusted_proxies")


@dataclass(frozen=True)
class MembershipConfig:
    """How blobgate learns that a blob belongs to a repository."""

    source: str = "upstream"
    dsn: str | None = None
    cache_ttl_s: int = 300
    cache_size: int = 100_000
    warm_from_manifests: bool = True
    warm_max_blobs: int = 128

    def __post_init__(self) -> None:
        check(self.warm_max_blobs > 0, "warm_max_blobs", "must be positive")
        check(self.source in ("upstream", "harbor_db"), "source",
              "must be 'upstream' or 'harbor_db'")
        check(self.source != "harbor_db" or bool(self.dsn), "dsn", "is required for harbor_db")
        check(self.cache_ttl_s >= 0, "cache_ttl_s", "must not be negative")
        check(self.cache_size > 0, "cache_size", "must be positive")


@dataclass(frozen=True)
class AuditConfig:
    """Where the audit trail of blob access goes."""

    sink: str = "log"
    dsn: str | None = None
    table: str = "blobgate_audit"
    queue_size: int = 10_000
    batch_size: int = 500
    flush_interval_s: float = 1.0

    def __post_init__(self) -> None:
        check(self.sink in ("log", "postgres"), "sink", "must be 'log' or 'postgres'")
        check(self.sink != "postgres" or bool(self.dsn), "dsn", "is required for sink postgres")
        check(re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.table) is not None, "table",
              "must be a lower-case SQL identifier")
        check(self.queue_size > 0, "queue_size", "must be positive")
        check(self.batch_size > 0, "batch_size", "must be positive")
        check(self.flush_interval_s > 0, "flush_interval_s", "must be positive")


@dataclass(frozen=True)
class LogConfig:
    """Log verbosity and the per-request access log."""

    level: str = "info"
    access_log: bool = True

    def __post_init__(self) -> None:
        levels = ("debug", "info", "warning", "error")
        check(self.level in levels, "level", f"must be one of {', '.join(levels)}")


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    log: LogConfig = field(default_factory=LogConfig)


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
