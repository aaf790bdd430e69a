"""Configuration of the admin listener (``admin:``): where operations that change a
running gateway are served, and the token that guards them."""

from __future__ import annotations

from dataclasses import dataclass, field

from blobgate.config.service import ServerTLSConfig
from blobgate.config.settings import check


@dataclass(frozen=True)
class AdminConfig:
    """The admin listener (``POST /admin/cache/flush``). It is on unless ``enabled`` is
    false, but refuses every request until ``token_file`` names the bearer token callers
    must present (a mounted Secret, re-read when it changes)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9103
    token_file: str | None = None
    reload_interval_s: float = 10.0
    tls: ServerTLSConfig = field(default_factory=ServerTLSConfig)

    def __post_init__(self) -> None:
        check(1 <= self.port <= 65535, "port", "must be between 1 and 65535")
        check(self.token_file != "", "token_file", "must be a path or null")
        check(self.reload_interval_s >= 0, "reload_interval_s", "must not be negative")


def ports(first: int, workers: int) -> range:
    """The ports of a per-worker listener: ``first`` for worker 0, ``first + i`` for i."""
    return range(first, first + workers)
