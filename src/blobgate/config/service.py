"""Configuration sections for serving: listeners, upstream, tokens, membership, audit, logs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.util import find_spec
from urllib.parse import urlsplit

from blobgate.config.settings import check, check_url

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")


@dataclass(frozen=True)
class ServerTLSConfig:
    """A certificate (PEM, chain allowed) and key to serve HTTPS with; reloaded on change."""

    cert_file: str | None = None
    key_file: str | None = None
    reload_interval_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None

    def __post_init__(self) -> None:
        check((self.cert_file is None) == (self.key_file is None), "key_file",
              "cert_file and key_file go together")
        check(self.reload_interval_s >= 0, "reload_interval_s", "must not be negative")


@dataclass(frozen=True)
class ClientTLSConfig:
    """How blobgate checks an HTTPS server it talks to (private CA, client certificate)."""

    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    server_name: str | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        check((self.client_cert_file is None) == (self.client_key_file is None),
              "client_key_file", "client_cert_file and client_key_file go together")


EVENT_LOOPS = ("asyncio", "uvloop")


@dataclass(frozen=True)
class ServerConfig:
    """Where blobgate listens, and the host names clients use to reach it."""

    host: str = "0.0.0.0"  # noqa: S104 - a gateway listens on all interfaces by default
    port: int = 5080
    public_hosts: tuple[str, ...] = ()
    shutdown_grace_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    client_body_timeout_s: float = 60.0
    backlog: int = 2048
    workers: int = 1
    event_loop: str = "asyncio"
    tls: ServerTLSConfig = field(default_factory=ServerTLSConfig)

    def __post_init__(self) -> None:
        check(self.event_loop in EVENT_LOOPS, "event_loop",
              f"must be one of {', '.join(EVENT_LOOPS)}")
        check(self.event_loop != "uvloop" or find_spec("uvloop") is not None, "event_loop",
              "uvloop is not installed")
        check(self.keepalive_timeout_s > 0, "keepalive_timeout_s", "must be positive")
        check(self.client_body_timeout_s > 0, "client_body_timeout_s", "must be positive")
        check(1 <= self.backlog <= 65535, "backlog", "must be between 1 and 65535")
        check(1 <= self.port <= 65535, "port", "must be between 1 and 65535")
        check(self.shutdown_grace_s >= 0, "shutdown_grace_s", "must not be negative")
        check(1 <= self.workers <= 64, "workers", "must be between 1 and 64")


@dataclass(frozen=True)
class MetricsConfig:
    """The private listener for /metrics, /healthz and /readyz."""

    enabled: bool = True
    host: str = "0.0.0.0"  # noqa: S104 - scraped by Prometheus from other pods
    port: int = 9102
    tls: ServerTLSConfig = field(default_factory=ServerTLSConfig)

    def __post_init__(self) -> None:
        check(1 <= self.port <= 65535, "port", "must be between 1 and 65535")


@dataclass(frozen=True)
class UpstreamConfig:
    """The registry blobgate fronts."""

    url: str = "http://harbor-core:80"
    timeout_s: float = 900.0
    check_timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    max_connections: int = 256
    pool_timeout_s: float = 30.0
    check_max_connections: int = 64
    tls: ClientTLSConfig = field(default_factory=ClientTLSConfig)

    def __post_init__(self) -> None:
        check_url(self.url, "url")
        check(self.timeout_s > 0, "timeout_s", "must be positive")
        check(self.check_timeout_s > 0, "check_timeout_s", "must be positive")
        check(self.connect_timeout_s > 0, "connect_timeout_s", "must be positive")
        check(self.max_connections > 0, "max_connections", "must be positive")
        check(self.pool_timeout_s > 0, "pool_timeout_s", "must be positive")
        check(self.check_max_connections > 0, "check_max_connections", "must be positive")


@dataclass(frozen=True)
class AuthConfig:
    """How Bearer tokens from the registry's token service are verified."""

    issuer: str = "harbor-token-issuer"
    service: str = "harbor-registry"
    certificates: str = "/etc/blobgate/token.crt"
    leeway_s: int = 60
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS
    token_cache_size: int = 100_000
    token_cache_bytes: int = 64 << 20
    reload_interval_s: float = 10.0
    realm: str | None = None
    refusal_ttl_s: float = 10.0

    def __post_init__(self) -> None:
        check(bool(self.issuer), "issuer", "must not be empty")
        check(0 <= self.refusal_ttl_s <= 600, "refusal_ttl_s", "must be between 0 and 600")
        check(self.reload_interval_s >= 0, "reload_interval_s", "must not be negative")
        if self.realm is not None:
            check_url(self.realm, "realm")
        check(bool(self.service), "service", "must not be empty")
        check(0 <= self.leeway_s <= 600, "leeway_s", "must be between 0 and 600")
        check(self.token_cache_size > 0, "token_cache_size", "must be positive")
        check(self.token_cache_bytes >= 1 << 20, "token_cache_bytes", "must be at least 1048576")
        check(bool(self.algorithms), "algorithms", "must name at least one algorithm")
        for alg in self.algorithms:
            check(
                alg in ASYMMETRIC_ALGORITHMS,
                "algorithms",
                f"{alg!r} is not allowed; choose from {', '.join(ASYMMETRIC_ALGORITHMS)}",
            )


def check_dsn(dsn: str | None, password_file: str | None, needed: bool, why: str) -> None:
    """A PostgreSQL DSN (``needed``: required, ``why`` says for what) and the file holding
    its password: the password lives in one place, never in both."""
    check(not needed or bool(dsn), "dsn", f"is required for {why}")
    if password_file is None:
        return
    check(bool(dsn), "dsn_password_file", "needs a dsn to go with it")
    check(urlsplit(dsn or "").password is None, "dsn",
          "holds a password while dsn_password_file is set; keep it in the file only")


@dataclass(frozen=True)
class MembershipConfig:
    """How blobgate learns that a blob belongs to a repository."""

    source: str = "upstream"
    dsn: str | None = None
    dsn_password_file: str | None = None
    cache_ttl_s: int = 300
    cache_size: int = 100_000
    warm_from_manifests: bool = True
    warm_max_blobs: int = 128

    def __post_init__(self) -> None:
        check(self.warm_max_blobs > 0, "warm_max_blobs", "must be positive")
        check(self.source in ("upstream", "harbor_db"), "source",
              "must be 'upstream' or 'harbor_db'")
        check_dsn(self.dsn, self.dsn_password_file, self.source == "harbor_db", "harbor_db")
        check(self.cache_ttl_s >= 0, "cache_ttl_s", "must not be negative")
        check(self.cache_size > 0, "cache_size", "must be positive")


@dataclass(frozen=True)
class AuditConfig:
    """Where the audit trail of blob access goes."""

    sink: str = "log"
    dsn: str | None = None
    dsn_password_file: str | None = None
    table: str = "blobgate_audit"
    queue_size: int = 10_000
    caller_queue_size: int = 1_000
    batch_size: int = 500
    flush_interval_s: float = 1.0

    def __post_init__(self) -> None:
        check(self.sink in ("log", "postgres"), "sink", "must be 'log' or 'postgres'")
        check_dsn(self.dsn, self.dsn_password_file, self.sink == "postgres", "sink postgres")
        check(re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.table) is not None, "table",
              "must be a lower-case SQL identifier")
        check(self.queue_size > 0, "queue_size", "must be positive")
        check(self.caller_queue_size > 0, "caller_queue_size", "must be positive")
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
class ApiConfig:
    """The presigned-URL API for tools other than registry clients."""

    enabled: bool = True
    max_batch: int = 100
    concurrency: int = 16
    max_expires_s: int = 7 * 24 * 3600
    credentials_ttl_s: float = 30.0

    def __post_init__(self) -> None:
        check(0 <= self.credentials_ttl_s <= 600, "credentials_ttl_s",
              "must be between 0 and 600 (a rotated secret works at most this long)")
        check(1 <= self.max_expires_s <= 7 * 24 * 3600, "max_expires_s",
              "must be between 1 and 604800 (SigV4's 7-day limit)")
        check(1 <= self.max_batch <= 10_000, "max_batch", "must be between 1 and 10000")
        check(self.concurrency > 0, "concurrency", "must be positive")
