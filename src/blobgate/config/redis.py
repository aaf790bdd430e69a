"""Configuration of the optional Redis that several replicas share (``redis:``)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from blobgate.config.settings import check

SCHEMES = ("redis", "rediss")


@dataclass(frozen=True)
class RedisConfig:
    """Where the shared caches live. Off unless ``url`` or ``sentinels`` is set. The
    password never sits in this file or the URL: ``BLOBGATE_REDIS_PASSWORD`` (from a
    Secret) or ``password_file`` (a mounted Secret). Redis is not trusted with the
    integrity of what it holds: every entry and message is signed with the key in
    ``mac_key_file`` (required with Redis); ``mac_previous_key_file`` is still accepted
    for ``mac_previous_key_grace_s`` seconds after it is first read, for rotation."""

    url: str | None = None
    sentinels: tuple[str, ...] = ()
    sentinel_master: str = "mymaster"
    password: str | None = None
    password_file: str | None = None
    key_prefix: str = "blobgate:"
    timeout_ms: int = 50
    retry_s: float = 5.0
    mac_key_file: str | None = None
    mac_previous_key_file: str | None = None
    mac_previous_key_grace_s: float = 3600.0
    mac_reload_interval_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return self.url is not None or bool(self.sentinels)

    def __post_init__(self) -> None:
        if self.url is not None:
            parts = urlsplit(self.url)
            check(parts.scheme in SCHEMES and (bool(parts.hostname) or bool(self.sentinels)),
                  "url", f"must be a redis:// or rediss:// URL, got {parts.scheme}://…")
            check(parts.password is None, "url",
                  "must not carry a password: use BLOBGATE_REDIS_PASSWORD or password_file")
        for entry in self.sentinels:
            host, _, port = entry.rpartition(":")
            check(bool(host) and port.isdigit(), "sentinels", f"{entry!r} is not host:port")
        check(self.password is None or self.password_file is None, "password_file",
              "set either password (from the environment) or password_file, not both")
        check(bool(self.key_prefix), "key_prefix", "must not be empty")
        check(1 <= self.timeout_ms <= 5000, "timeout_ms", "must be between 1 and 5000")
        check(self.retry_s >= 0, "retry_s", "must not be negative")
        check(self.mac_key_file is not None or not self.enabled, "mac_key_file",
              "is required with redis.url or redis.sentinels: a file (mounted Secret) holding"
              " the key every replica signs shared entries with, e.g. openssl rand -hex 32")
        check(self.mac_previous_key_file is None or self.mac_key_file is not None,
              "mac_previous_key_file", "needs mac_key_file (the current key)")
        check(self.mac_previous_key_grace_s >= 0, "mac_previous_key_grace_s",
              "must not be negative")
        check(self.mac_reload_interval_s >= 0, "mac_reload_interval_s", "must not be negative")
