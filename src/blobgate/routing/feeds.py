"""Cloud providers' published IP ranges, so a routing rule can name a network by region
(``aws:eu-west-1``, ``gcp:europe-west1``, ``azure:westeurope``).

Each feed is read in its provider's own published format (AWS ``ip-ranges.json``,
Google ``cloud.json``, Azure Service Tags JSON) from a file or a URL, and read again
every ``refresh_s``. A read that fails, or a document that does not parse or holds no
prefix, leaves the last good copy in force (then the next try comes within a minute);
``blobgate_reload_healthy{file="ip_ranges_<provider>"}`` shows it and
``blobgate_ip_ranges_age_seconds`` says how old the copy in force is. Until a feed
has loaded once its selectors match nobody: clients go where the rules without them
send them, never somewhere a rule did not mean.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from blobgate.config import FeedConfig, RoutingConfig
from blobgate.config.routing import SELECTOR
from blobgate.errors import ConfigError
from blobgate.routing.prefixes import Network

log = logging.getLogger(__name__)


class FeedStats(Protocol):
    """What a feed reports (``ops.metrics.Stats`` is one): reads, and the copy's age."""

    @property
    def reloads(self) -> MutableMapping[tuple[str, str], int]: ...
    @property
    def reload_healthy(self) -> MutableMapping[str, int]: ...
    @property
    def feeds_loaded_at(self) -> MutableMapping[str, float | None]: ...

RETRY_S = 60.0  # after a failed read
MAX_FEED_BYTES = 64 << 20  # AWS's file is ~2 MiB
_TIMEOUT = aiohttp.ClientTimeout(total=60)
Regions = dict[str, tuple[Network, ...]]


class FeedError(ValueError):
    """A feed document that is not in its provider's format, or holds no prefix."""


def _aws(doc: Any) -> Iterator[tuple[Any, Any]]:
    for entry in doc["prefixes"]:
        yield entry["region"], entry["ip_prefix"]
    for entry in doc.get("ipv6_prefixes", []):
        yield entry["region"], entry["ipv6_prefix"]


def _gcp(doc: Any) -> Iterator[tuple[Any, Any]]:
    for entry in doc["prefixes"]:
        yield entry["scope"], entry.get("ipv4Prefix") or entry["ipv6Prefix"]


def _azure(doc: Any) -> Iterator[tuple[Any, Any]]:
    for value in doc["values"]:
        tag, _, region = value["name"].partition(".")
        if tag == "AzureCloud" and region:
            for prefix in value["properties"]["addressPrefixes"]:
                yield region, prefix


_FORMATS: dict[str, Callable[[Any], Iterator[tuple[Any, Any]]]] = {
    "aws": _aws, "gcp": _gcp, "azure": _azure}


def parse(provider: str, document: bytes) -> Regions:
    """Each region's networks (region names lower-cased) in a ``provider`` feed."""
    table: dict[str, list[Network]] = {}
    try:
        for region, prefix in _FORMATS[provider](json.loads(document)):
            if not isinstance(region, str) or not isinstance(prefix, str):
                raise TypeError(f"region {region!r}, prefix {prefix!r}")
            table.setdefault(region.lower(), []).append(ipaddress.ip_network(prefix,
                                                                             strict=False))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FeedError(f"not a {provider} IP-range feed: {type(exc).__name__}: {exc}") from None
    if not table:
        raise FeedError(f"the {provider} feed holds no prefix")
    return {region: tuple(networks) for region, networks in table.items()}


async def _read(source: str) -> bytes:
    if not source.startswith(("http://", "https://")):
        return await asyncio.to_thread(Path(source).read_bytes)
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session, session.get(source) as reply:
        reply.raise_for_status()
        document = await reply.content.read(MAX_FEED_BYTES + 1)
    if len(document) > MAX_FEED_BYTES:
        raise FeedError(f"larger than {MAX_FEED_BYTES} bytes")
    return document


class Feed:
    """One provider's ranges: the last good copy, refreshed on a period."""

    def __init__(self, cfg: FeedConfig, stats: FeedStats,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.name = f"ip_ranges_{cfg.provider}"
        self.regions: Regions = {}
        self._stats = stats
        self._clock = clock
        self._listeners: list[Callable[[], None]] = []
        stats.feeds_loaded_at[cfg.provider] = None

    def networks(self, region: str) -> tuple[Network, ...]:
        """The networks of ``region`` in the copy in force (none before the first load)."""
        return self.regions.get(region.lower(), ())

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each new copy is in force."""
        self._listeners.append(listener)

    async def refresh(self) -> bool:
        """Read the feed again; ``False`` (the last good copy kept) when that failed."""
        try:
            document = await _read(self.cfg.source)
            regions = await asyncio.to_thread(parse, self.cfg.provider, document)
        except (OSError, FeedError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("%s: keeping the copy in force, reading %s failed: %s",
                        self.name, self.cfg.source, exc)
            self._stats.reloads[self.name, "error"] += 1
            self._stats.reload_healthy[self.name] = 0
            return False
        self.regions = regions
        self._stats.reloads[self.name, "ok"] += 1
        self._stats.reload_healthy[self.name] = 1
        self._stats.feeds_loaded_at[self.cfg.provider] = self._clock()
        for listener in self._listeners:
            listener()
        return True

    async def run(self, healthy: bool) -> None:
        """Refresh for ever: every ``refresh_s``, within a minute after a failure."""
        while True:
            await asyncio.sleep(self.cfg.refresh_s if healthy
                                else min(RETRY_S, self.cfg.refresh_s))
            healthy = await self.refresh()


def check(routing: RoutingConfig) -> None:
    """For ``check-config``: every feed reads and parses, and every region a rule names
    (``aws:eu-west-1``) has networks in it (a typo would otherwise match nobody)."""
    loaded: dict[str, Regions] = {}
    for i, cfg in enumerate(routing.ip_ranges):
        try:
            loaded[cfg.provider] = parse(cfg.provider, asyncio.run(_read(cfg.source)))
        except (OSError, FeedError, aiohttp.ClientError, TimeoutError) as exc:
            raise ConfigError(f"routing.ip_ranges[{i}].source", str(exc)) from None
    for i, rule in enumerate(routing.rules):
        for network in rule.networks:
            selector = SELECTOR.fullmatch(network)
            if selector is not None and not loaded[selector[1]].get(selector[2].lower()):
                raise ConfigError(f"routing.rules[{i}].networks",
                                  f"{network!r}: the {selector[1]} feed has no such region")
