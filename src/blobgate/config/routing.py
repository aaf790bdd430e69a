"""Configuration of routing: which client is redirected to which location (the
registry's store, or a copy of it), or streamed, and the cloud providers' published IP
ranges that rules may name networks by."""

from __future__ import annotations

import re
from dataclasses import dataclass

from blobgate.config.settings import check, check_url
from blobgate.config.storage import PRIMARY, check_networks
from blobgate.errors import ConfigError

PROVIDERS = ("aws", "gcp", "azure")
SELECTOR = re.compile(r"(aws|gcp|azure):([A-Za-z0-9-]{1,64})")
"""A network named by a feed: ``<provider>:<region>`` (``aws:eu-west-1``)."""
MAX_REFRESH_S = 7 * 24 * 3600


@dataclass(frozen=True)
class FeedConfig:
    """One provider's published IP ranges, read from a file (a mounted ConfigMap) or an
    http(s) URL, read again every ``refresh_s`` seconds (a failed read keeps the last good
    copy and is tried again within a minute)."""

    provider: str = ""
    source: str = ""
    refresh_s: float = 43200.0

    def __post_init__(self) -> None:
        check(self.provider in PROVIDERS, "provider", "must be 'aws', 'gcp' or 'azure'")
        check(bool(self.source), "source", "must be a file path or an http(s):// URL")
        if self.source.startswith(("http://", "https://")):
            check_url(self.source, "source")
        check(1 <= self.refresh_s <= MAX_REFRESH_S, "refresh_s",
              f"must be between 1 and {MAX_REFRESH_S}")

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("http://", "https://"))


def _check_rule_networks(values: tuple[str, ...]) -> None:
    """Each entry is a CIDR or a feed selector (``aws:eu-west-1``)."""
    check_networks(tuple(v for v in values if SELECTOR.fullmatch(v) is None), "networks")


@dataclass(frozen=True)
class RouteRule:
    """One routing rule: when all its given conditions match, ``action`` applies; a
    redirect goes to the first of ``locations`` (copies by name, ``primary``) that holds
    the blob, the primary last whether listed or not."""

    action: str = "redirect"
    networks: tuple[str, ...] = ()
    repositories: tuple[str, ...] = ()
    user_agents: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        check(self.action in ("redirect", "stream"), "action", "must be 'redirect' or 'stream'")
        check(bool(self.networks or self.repositories or self.user_agents), "action",
              "a rule needs at least one of networks, repositories, user_agents")
        check(not (self.locations and self.action == "stream"), "locations",
              "a stream rule sends no client anywhere: drop locations or the action")
        check(len(set(self.locations)) == len(self.locations), "locations",
              f"names a location twice: {list(self.locations)}")
        check(PRIMARY not in self.locations[:-1], "locations",
              "primary is always tried last: list it last or not at all")
        check(re.fullmatch(r"[A-Za-z0-9_.-]{0,40}", self.name) is not None, "name",
              "must be at most 40 letters, digits, '.', '-' and '_' (a metric label)")
        _check_rule_networks(self.networks)
        for pattern in self.user_agents:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError("user_agents", f"{pattern!r}: {exc}") from None


@dataclass(frozen=True)
class RoutingConfig:
    """Per request: redirect the client to storage (which location), or stream the bytes
    through blobgate."""

    default: str = "redirect"
    trusted_proxies: tuple[str, ...] = ()
    rules: tuple[RouteRule, ...] = ()
    ip_ranges: tuple[FeedConfig, ...] = ()

    def __post_init__(self) -> None:
        check(self.default in ("redirect", "stream"), "default", "must be 'redirect' or 'stream'")
        check_networks(self.trusted_proxies, "trusted_proxies")
        providers = [feed.provider for feed in self.ip_ranges]
        check(len(set(providers)) == len(providers), "ip_ranges",
              f"one feed per provider, got {providers}")
        for i, rule in enumerate(self.rules):
            for network in rule.networks:
                selector = SELECTOR.fullmatch(network)
                check(selector is None or selector[1] in providers, f"rules[{i}].networks",
                      f"{network!r} names a provider with no feed in routing.ip_ranges")

