"""Where the registry backend may follow the registry's storage redirect.

``storage.backend: proxy`` asks the registry for a blob with the client's credentials
and, when the registry redirects to its storage, fetches from there itself and streams
what it finds. A compromised or misconfigured registry could point that second request
at anything blobgate can reach: cloud metadata (169.254.169.254), services on its own
loopback. So a redirect is followed only

- once (the storage's own answer is never followed further),
- with ``http`` or ``https``,
- to the registry's own host and port, or to one of ``storage.proxy.redirect_hosts``,
- and, unless ``storage.proxy.allow_private_redirects``, to no loopback, link-local,
  unspecified, multicast or reserved address: an IP literal is checked here, a name by
  ``PublicResolver`` once it is resolved, so a name resolving to 127.0.0.1 is refused
  before any connection is made.

A refusal is a ``RedirectRefused`` (a ``StorageError``: the request passes through to
the registry), counted in ``blobgate_refused_redirects_total{reason}`` and logged with
the host only, since the URL may carry a signature.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import NoReturn

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import is_ip_address
from aiohttp.resolver import DefaultResolver
from yarl import URL

from blobgate.config import ProxyConfig
from blobgate.errors import StorageError
from blobgate.ops.metrics import Stats

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Not loopback or link-local by Python's reckoning, yet never storage: this network, and
# the instance metadata services outside 169.254.0.0/16 (AWS over IPv6, Alibaba Cloud).
_NEVER = (ipaddress.ip_network("0.0.0.0/8"), ipaddress.ip_network("fd00:ec2::/32"),
          ipaddress.ip_network("100.100.100.200/32"))
_WHY = {
    "location": "not a URL",
    "scheme": "not http or https",
    "host": "not the registry's host nor in storage.proxy.redirect_hosts",
    "address": "a loopback, link-local, unspecified, multicast or reserved address",
}


class RedirectRefused(StorageError):
    """The registry redirected somewhere blobgate does not go."""


class ForbiddenAddress(OSError):
    """A name resolved only to addresses a redirect must not reach."""


def forbidden(address: str) -> bool:
    """Whether the IP address ``address`` is one a redirect must never reach (also as
    the IPv4 address inside an IPv4-mapped or 6to4 IPv6 address)."""
    ip = ipaddress.ip_address(address)
    inner = (ip.ipv4_mapped, ip.sixtofour) if isinstance(ip, ipaddress.IPv6Address) else ()
    return any(_local(each) for each in (ip, *inner) if each is not None)


def _local(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast
            or ip.is_reserved or any(ip in network for network in _NEVER
                                     if network.version == ip.version))


def _literal(host: str) -> str | None:
    """``host`` as a normalized IP address, or ``None`` when it is a name."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _key(host: str | None) -> str:
    """``host`` as the allow-list compares it: lower case, IP addresses normalized."""
    host = (host or "").lower()
    return _literal(host) or host


class PublicResolver(AbstractResolver):
    """Resolves names as usual and keeps only the addresses a redirect may reach;
    ``ForbiddenAddress`` when none is left (aiohttp then connects nowhere)."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        allowed = [each for each in found if not forbidden(each["host"])]
        if not allowed:
            raise ForbiddenAddress(f"{host} resolves to no address a redirect may reach")
        return allowed

    async def close(self) -> None:
        await self._resolver.close()


class RedirectPolicy:
    """Decides whether the registry's ``Location`` may be followed."""

    def __init__(self, cfg: ProxyConfig, registry: URL, stats: Stats) -> None:
        hosts = (URL(f"//{entry}") for entry in cfg.redirect_hosts)
        self._hosts = {(_key(url.raw_host), url.explicit_port) for url in hosts}
        self._hosts.add((_key(registry.raw_host), registry.port))
        self._check_addresses = not cfg.allow_private_redirects
        self._stats = stats

    def target(self, base: URL, location: str) -> URL:
        """Where to follow ``location`` (relative to ``base``); ``RedirectRefused`` when
        it is not allowed."""
        try:
            url = base.join(URL(location, encoded=True))
            port = url.port
        except ValueError:
            self.refuse("location", "an unreadable Location")
        if url.scheme not in _DEFAULT_PORTS:
            self.refuse("scheme", f"a {url.scheme or 'scheme-less'}: URL")
        # The host as aiohttp will connect to it (never decoded into something else).
        host, where = _key(url.raw_host), str(url.origin())
        if (host, port) not in self._hosts and not (
                port == _DEFAULT_PORTS[url.scheme] and (host, None) in self._hosts):
            self.refuse("host", where)
        if self._check_addresses and _literal(host) and forbidden(host):
            self.refuse("address", where)
        if _literal(host) is None and is_ip_address(host):
            # A form aiohttp connects to as an address without asking the resolver
            # (2130706433, 127.1, 0177.0.0.1): never a storage host.
            self.refuse("address", where)
        return url

    def refuse(self, reason: str, where: str) -> NoReturn:
        """Count, log and raise the refusal to follow a redirect to ``where``."""
        self._stats.refused_redirects[reason] += 1
        log.warning("not following the registry's redirect to %s: %s", where, _WHY[reason])
        raise RedirectRefused(f"the registry redirected to {where}: {_WHY[reason]}",
                              f"redirect_{reason}")
