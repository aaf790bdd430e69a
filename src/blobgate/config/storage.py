"""Configuration sections for blob bytes: S3, Azure Blob, GCS, the CDN, the registry
as origin, and copies of the registry's store elsewhere."""

from __future__ import annotations

import dataclasses
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
        check_networks(self.bypass_networks, "bypass_networks")
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
COPY_BACKENDS = ("s3", "azure", "gcs")
PRIMARY = "primary"  # the location name of the registry's own store
_LOCATION = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?")


def _check_backend(backend: str, allowed: tuple[str, ...], azure: AzureConfig,
                   gcs: GCSConfig, cdn: CDNConfig, key: str = "backend") -> None:
    """``backend`` (the setting ``key``) is one of ``allowed``, and its section holds what
    it needs."""
    check(backend in allowed, "backend",
          "must be " + ", ".join(repr(b) for b in allowed[:-1]) + f" or {allowed[-1]!r}")
    if backend == "azure":
        check(bool(azure.account_name), "azure.account_name", f"is required with {key} azure")
        check(bool(azure.container), "azure.container", f"is required with {key} azure")
    if backend == "gcs":
        check(bool(gcs.bucket), "gcs.bucket", f"is required with {key} gcs")
    check(not (cdn.enabled and backend != "s3"), "cdn.base_url", f"a CDN needs {key} s3")


@dataclass(frozen=True)
class CopyConfig:
    """Another store that holds the registry's blobs under the same keys (replicated by
    something other than blobgate, which never writes): a location routing rules can send
    clients to, each redirect only after a look shows the blob is there.

    ``credentials_file`` gives the copy credentials of its own (a mounted Secret): for s3
    an AWS shared-credentials file (its ``[default]`` keys), for azure the account key,
    for gcs a service-account key file; without it the standard chains are used.
    """

    name: str = ""
    backend: str = "s3"
    credentials_file: str | None = None
    s3: S3Config = field(default_factory=S3Config)
    azure: AzureConfig = field(default_factory=AzureConfig)
    gcs: GCSConfig = field(default_factory=GCSConfig)
    cdn: CDNConfig = field(default_factory=CDNConfig)

    def __post_init__(self) -> None:
        check(_LOCATION.fullmatch(self.name) is not None, "name",
              "must be 1 to 32 lower-case letters, digits, '-' and '_'")
        check(self.name not in (PRIMARY, "stream"), "name",
              f"{self.name!r} is reserved (the registry's own store, or streaming)")
        _check_backend(self.backend, COPY_BACKENDS, self.azure, self.gcs, self.cdn)


@dataclass(frozen=True)
class StorageConfig:
    """Where blob bytes come from: an object store (S3, Azure Blob, GCS: redirect or
    stream), or the registry (stream only); and ``copies`` of that store elsewhere."""

    backend: str = "s3"
    url_cache_size: int = 100_000
    missing_ttl_s: float = 5.0
    stream_chunk_bytes: int = 1 << 20
    s3: S3Config = field(default_factory=S3Config)
    azure: AzureConfig = field(default_factory=AzureConfig)
    gcs: GCSConfig = field(default_factory=GCSConfig)
    cdn: CDNConfig = field(default_factory=CDNConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    copies: tuple[CopyConfig, ...] = ()

    def __post_init__(self) -> None:
        _check_backend(self.backend, BACKENDS, self.azure, self.gcs, self.cdn,
                       "storage.backend")
        check(self.url_cache_size > 0, "url_cache_size", "must be positive")
        check(0 <= self.missing_ttl_s <= 300, "missing_ttl_s", "must be between 0 and 300")
        check(4096 <= self.stream_chunk_bytes <= 16 << 20, "stream_chunk_bytes",
              "must be between 4096 and 16777216")
        check(not (self.copies and self.backend == "proxy"), "copies",
              "need the registry's store as primary (storage.backend s3, azure or gcs)")
        names = [copy.name for copy in self.copies]
        check(len(set(names)) == len(names), "copies", f"names must be unique, got {names}")

    @property
    def locations(self) -> tuple[str, ...]:
        """Every location name: the copies', then ``primary``."""
        return (*(copy.name for copy in self.copies), PRIMARY)

    def of_copy(self, copy: CopyConfig) -> StorageConfig:
        """The settings that open ``copy`` the way the primary is opened."""
        return dataclasses.replace(self, backend=copy.backend, s3=copy.s3, azure=copy.azure,
                                   gcs=copy.gcs, cdn=copy.cdn, copies=())


def check_networks(values: tuple[str, ...], key: str) -> None:
    """Each value must be a CIDR with no host bits set (a typo must not widen a network)."""
    for value in values:
        try:
            ipaddress.ip_network(value)
        except ValueError as exc:
            raise ConfigError(key, f"{value!r} is not a network in CIDR notation ({exc})") from None
