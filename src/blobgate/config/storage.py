"""Configuration sections for blob bytes: S3, Azure Blob, GCS, the CDN, the registry
as origin, and redirect-or-stream routing."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from blobgate.config.settings import check, check_url
from blobgate.errors import ConfigError

SIGV4_MAX_EXPIRES_S = 7 * 24 * 3600  # also the longest Azure user delegation SAS and GCS V4 URL
_AZURE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_AZURE_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")


def _check_expires(expires_s: int) -> None:
    """URL life: at least a minute, at most the 7-day limit every signing scheme shares."""
    check(60 <= expires_s <= SIGV4_MAX_EXPIRES_S, "expires_s",
          f"must be between 60 and {SIGV4_MAX_EXPIRES_S} (the 7-day limit of signed URLs)")


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
    ca_file: str | None = None
    verify: bool = True
    use_dualstack: bool = False
    accelerate: bool = False

    def __post_init__(self) -> None:
        check(bool(self.bucket), "bucket", "must not be empty")
        check(bool(self.region), "region", "must not be empty")
        for flag, name in ((self.accelerate, "accelerate"), (self.use_dualstack, "use_dualstack")):
            check(not flag or self.endpoint_url is self.public_endpoint_url is None, name,
                  "chooses an AWS endpoint: endpoint_url and public_endpoint_url must be null")
        check(not (self.accelerate and self.path_style), "accelerate",
              "needs path_style false (S3 Transfer Acceleration only has virtual-hosted URLs)")
        if self.endpoint_url is not None:
            check_url(self.endpoint_url, "endpoint_url")
        if self.public_endpoint_url is not None:
            check_url(self.public_endpoint_url, "public_endpoint_url")
        _check_expires(self.expires_s)


@dataclass(frozen=True)
class AzureConfig:
    """The container the registry's azure driver uses, and how SAS URLs to it are signed.

    The account key comes from ``AZURE_STORAGE_KEY``; without it, the standard Azure
    credential chain signs user delegation SAS URLs. Neither lives in this file.
    """

    account_name: str = ""
    container: str = ""
    endpoint_url: str | None = None
    public_endpoint_url: str | None = None
    rootdirectory: str = ""
    expires_s: int = 1200

    def __post_init__(self) -> None:
        check(self.account_name == "" or _AZURE_ACCOUNT.fullmatch(self.account_name) is not None,
              "account_name", "must be 3 to 24 lower-case letters and digits")
        check(self.container == "" or _AZURE_CONTAINER.fullmatch(self.container) is not None,
              "container", "must be 3 to 63 lower-case letters, digits and single hyphens")
        for url, key in ((self.endpoint_url, "endpoint_url"),
                         (self.public_endpoint_url, "public_endpoint_url")):
            if url is not None:
                check_url(url, key)
        _check_expires(self.expires_s)


@dataclass(frozen=True)
class GCSConfig:
    """The bucket the registry's gcs driver uses; URLs are V4 signed with the standard
    Google credentials (a service-account key file, or IAM signBlob for workload identity)."""

    bucket: str = ""
    rootdirectory: str = ""
    endpoint_url: str | None = None
    expires_s: int = 1200

    def __post_init__(self) -> None:
        check(self.bucket == "" or _GCS_BUCKET.fullmatch(self.bucket) is not None, "bucket",
              "must be 3 to 222 lower-case letters, digits, dots, hyphens and underscores")
        if self.endpoint_url is not None:
            check_url(self.endpoint_url, "endpoint_url")
        _check_expires(self.expires_s)


@dataclass(frozen=True)
class CDNConfig:
    """CloudFront in front of the bucket: blob redirects go to signed CDN URLs."""

    base_url: str | None = None
    key_pair_id: str = ""
    key_pair_id_file: str | None = None
    private_key_file: str = ""
    expires_s: int = 1200
    bypass_networks: tuple[str, ...] = ()
    reload_interval_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return self.base_url is not None

    def __post_init__(self) -> None:
        _check_networks(self.bypass_networks, "bypass_networks")
        check(self.reload_interval_s >= 0, "reload_interval_s", "must not be negative")
        if self.base_url is None:
            return
        check_url(self.base_url, "base_url")
        check(bool(self.key_pair_id or self.key_pair_id_file), "key_pair_id",
              "is required with base_url (or set key_pair_id_file)")
        check(bool(self.private_key_file), "private_key_file", "is required with base_url")
        _check_expires(self.expires_s)


_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


@dataclass(frozen=True)
class ProxyConfig:
    """Where ``storage.backend: proxy`` may follow the registry's storage redirect: the
    registry's own host and ``redirect_hosts`` (``host`` for its standard ports, or
    ``host:port``), never a loopback, link-local, unspecified, multicast or reserved
    address unless ``allow_private_redirects`` (storage on loopback in a test stack)."""

    redirect_hosts: tuple[str, ...] = ()
    allow_private_redirects: bool = False

    def __post_init__(self) -> None:
        for entry in self.redirect_hosts:
            match = _HOST_PORT.fullmatch(entry)
            port = int(match[2][1:]) if match is not None and match[2] else None
            check(match is not None and (port is None or 1 <= port <= 65535),
                  "redirect_hosts", f"{entry!r} is not a host name or host:port")


BACKENDS = ("s3", "azure", "gcs", "proxy")


@dataclass(frozen=True)
class StorageConfig:
    """Where blob bytes come from: an object store (S3, Azure Blob, GCS: redirect or
    stream), or the registry (stream only)."""

    backend: str = "s3"
    url_cache_size: int = 100_000
    missing_ttl_s: float = 5.0
    stream_chunk_bytes: int = 1 << 20
    s3: S3Config = field(default_factory=S3Config)
    azure: AzureConfig = field(default_factory=AzureConfig)
    gcs: GCSConfig = field(default_factory=GCSConfig)
    cdn: CDNConfig = field(default_factory=CDNConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)

    def __post_init__(self) -> None:
        check(self.backend in BACKENDS, "backend",
              "must be 's3', 'azure', 'gcs' or 'proxy'")
        if self.backend == "azure":
            check(bool(self.azure.account_name), "azure.account_name",
                  "is required with storage.backend azure")
            check(bool(self.azure.container), "azure.container",
                  "is required with storage.backend azure")
        if self.backend == "gcs":
            check(bool(self.gcs.bucket), "gcs.bucket", "is required with storage.backend gcs")
        check(self.url_cache_size > 0, "url_cache_size", "must be positive")
        check(0 <= self.missing_ttl_s <= 300, "missing_ttl_s", "must be between 0 and 300")
        check(not (self.cdn.enabled and self.backend != "s3"), "cdn.base_url",
              "a CDN needs storage.backend s3")
        check(4096 <= self.stream_chunk_bytes <= 16 << 20, "stream_chunk_bytes",
              "must be between 4096 and 16777216")


def _check_networks(values: tuple[str, ...], key: str) -> None:
    """Each value must be a CIDR with no host bits set (a typo must not widen a network)."""
    for value in values:
        try:
            ipaddress.ip_network(value)
        except ValueError as exc:
            raise ConfigError(key, f"{value!r} is not a network in CIDR notation ({exc})") from None


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
