"""Choosing, per request, between redirecting a client to storage and streaming the bytes.

Some clients cannot reach the storage host (firewalls, in-cluster-only S3), some
repositories must not leave through a CDN: rules match the client's network, the
repository name (glob) and the ``User-Agent`` (regular expression); the first rule whose
conditions all match decides, else the default. The client address honours
``X-Forwarded-For`` only when the direct peer is a configured trusted proxy.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from blobgate.config import RouteRule, RoutingConfig
from blobgate.decision import Decision, policy

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
TRUSTED = web.AppKey("trusted_proxies", tuple[Network, ...])
"""The gateway's ``routing.trusted_proxies``, for the request lines (set at start-up)."""


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
    if not in_networks(address, trusted):
        return address
    hops = [h for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
    while hops and in_networks(address, trusted):
        address = parse_address(hops.pop())
    return address


@dataclass(frozen=True)
class _Rule:
    stream: Decision | None  # ``None``: the rule redirects
    networks: tuple[Network, ...]
    repositories: tuple[str, ...]
    user_agents: tuple[re.Pattern[str], ...]

    @classmethod
    def compile(cls, rule: RouteRule, index: int) -> _Rule:
        return cls(
            policy(index) if rule.action == "stream" else None,
            parse_networks(rule.networks),
            rule.repositories,
            tuple(re.compile(p) for p in rule.user_agents),
        )

    def matches(self, address: Address | None, name: str, user_agent: str) -> bool:
        return (
            (not self.networks or in_networks(address, self.networks))
            and (not self.repositories or any(fnmatch.fnmatchcase(name, p)
                                               for p in self.repositories))
            and (not self.user_agents or any(p.search(user_agent) for p in self.user_agents))
        )


class RoutingPolicy:
    """Decides ``"redirect"`` or ``"stream"`` for a blob request."""

    def __init__(self, cfg: RoutingConfig) -> None:
        self.default = cfg.default
        self.trusted = parse_networks(cfg.trusted_proxies)
        self._default = policy(None) if cfg.default == "stream" else None
        self._rules = tuple(_Rule.compile(r, i) for i, r in enumerate(cfg.rules))

    def decide(self, request: web.BaseRequest, name: str) -> str:
        """The action for this request (the default when no rule matches)."""
        return "redirect" if self.streams(request, name) is None else "stream"

    def streams(self, request: web.BaseRequest, name: str) -> Decision | None:
        """Why this request is to be streamed (the rule that says so), or ``None`` when
        it is to be redirected."""
        if not self._rules:
            return self._default
        return self.streams_for(client_address(request, self.trusted), name,
                                request.headers.get("User-Agent", ""))

    def streams_for(self, address: Address | None, name: str, user_agent: str
                    ) -> Decision | None:
        """``streams`` for a client ``address`` and ``user_agent``."""
        for rule in self._rules:
            if rule.matches(address, name, user_agent):
                return rule.stream
        return self._default
