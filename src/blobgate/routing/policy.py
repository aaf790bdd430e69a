"""Choosing, per request, between redirecting a client to storage (which location) and
streaming the bytes.

Some clients cannot reach the storage host (firewalls, in-cluster-only S3), some
repositories must not leave through a CDN, some clients sit next to a copy of the store:
rules match the client's network (CIDRs, or a cloud region from a provider's published
ranges: ``feeds``), the repository name (glob) and the ``User-Agent`` (regular
expression); the first rule whose conditions all match decides, else the default. The
client address honours ``X-Forwarded-For`` only when the direct peer is a configured
trusted proxy.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from blobgate.config import PRIMARY, RouteRule, RoutingConfig
from blobgate.config.routing import SELECTOR
from blobgate.decision import Decision, policy
from blobgate.routing.feeds import Feed
from blobgate.routing.prefixes import Address, Network, PrefixSet

__all__ = ["TRUSTED", "Address", "Network", "Route", "RoutingPolicy", "client_address",
           "forwarded_client", "in_networks", "parse_address", "parse_networks"]
TRUSTED = web.AppKey("trusted_proxies", tuple[Network, ...])
"""The gateway's ``routing.trusted_proxies``, for the request lines (set at start-up)."""


@functools.lru_cache(maxsize=4096)  # the same peers and proxied clients, request after request
def parse_address(text: str | None) -> Address | None:
    """The address in ``text`` (IPv4-mapped IPv6 unwrapped), or ``None`` if it is not one."""
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """Networks from validated CIDR strings."""
    return tuple(ipaddress.ip_network(v) for v in values)


def in_networks(address: Address | None, networks: Sequence[Network]) -> bool:
    """True when ``address`` lies in any of ``networks``."""
    return address is not None and any(address in network for network in networks)


def client_address(request: web.BaseRequest, trusted: Sequence[Network]) -> Address | None:
    """The client's address: the peer, or the first untrusted hop of X-Forwarded-For."""
    return forwarded_client(parse_address(request.remote), request, trusted)


def forwarded_client(peer: Address | None, request: web.BaseRequest,
                     trusted: Sequence[Network]) -> Address | None:
    """``peer``, or, while the address at hand is a trusted proxy, the hop it names."""
    address = peer
    if not trusted or not in_networks(address, trusted):
        return address
    hops = [h for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
    while hops and in_networks(address, trusted):
        address = parse_address(hops.pop())
    return address


@dataclass(frozen=True)
class Route:
    """What a rule (or the default) decided: ``stream``, or ``redirect`` to the first of
    ``copies`` (location names, in order) holding the blob, else to the primary;
    ``reason`` labels the redirect (the rule's name, or ``default``)."""

    action: str
    copies: tuple[str, ...]
    reason: str

    @functools.cached_property
    def stream(self) -> Decision | None:
        """Why this route streams (``policy:<rule>``), or ``None`` when it redirects."""
        return policy(self.reason) if self.action == "stream" else None


def _networks(value: str, feeds: Mapping[str, Feed]) -> tuple[Network, ...]:
    """A CIDR, or a feed selector's networks in the feed's copy in force."""
    selector = SELECTOR.fullmatch(value)
    if selector is None:
        return (ipaddress.ip_network(value),)
    return feeds[selector[1]].networks(selector[2])


@dataclass(frozen=True)
class _Rule:
    route: Route
    networks: PrefixSet | None
    repositories: tuple[str, ...]
    user_agents: tuple[re.Pattern[str], ...]

    @classmethod
    def compile(cls, index: int, rule: RouteRule, feeds: Mapping[str, Feed]) -> _Rule:
        networks = None
        if rule.networks:
            networks = PrefixSet(n for value in rule.networks for n in _networks(value, feeds))
        copies = tuple(name for name in rule.locations if name != PRIMARY)
        return cls(
            Route(rule.action, copies, rule.name or f"rules[{index}]"),
            networks,
            rule.repositories,
            tuple(re.compile(p) for p in rule.user_agents),
        )

    def matches(self, address: Address | None, name: str, user_agent: str) -> bool:
        return (
            (self.networks is None or (address is not None and address in self.networks))
            and (not self.repositories or any(fnmatch.fnmatchcase(name, p)
                                               for p in self.repositories))
            and (not self.user_agents or any(p.search(user_agent) for p in self.user_agents))
        )


class RoutingPolicy:
    """Decides, per blob request, the ``Route``: stream, or redirect to which locations.

    Rules naming feed regions are rebuilt whenever a feed brings a new copy."""

    def __init__(self, cfg: RoutingConfig, feeds: Sequence[Feed] = ()) -> None:
        self.default = Route(cfg.default, (), "default")
        self.trusted = parse_networks(cfg.trusted_proxies)
        self._cfg = cfg
        self._feeds = {feed.cfg.provider: feed for feed in feeds}
        self._rules: tuple[_Rule, ...] = ()
        self._by_agent = any(rule.user_agents for rule in cfg.rules)
        self.compile()
        for feed in feeds:
            feed.on_change(self.compile)

    def compile(self) -> None:
        """Build the rules from the configuration and the feeds' copies in force."""
        self._rules = tuple(_Rule.compile(i, rule, self._feeds)
                            for i, rule in enumerate(self._cfg.rules))

    @property
    def has_rules(self) -> bool:
        """True when a route depends on the request (else ``route`` is the default)."""
        return bool(self._rules)

    def route(self, request: web.BaseRequest, name: str, address: Address | None) -> Route:
        """The route for this request from the client at ``address`` (``client_address``;
        the default when no rule matches)."""
        if not self._rules:
            return self.default
        user_agent = request.headers.get("User-Agent", "") if self._by_agent else ""
        return self.route_for(address, name, user_agent)

    def route_for(self, address: Address | None, name: str, user_agent: str) -> Route:
        """``route`` for a client ``address`` and ``user_agent`` (``blobgate explain``)."""
        for rule in self._rules:
            if rule.matches(address, name, user_agent):
                return rule.route
        return self.default
