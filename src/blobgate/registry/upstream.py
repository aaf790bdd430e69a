"""The connection to the upstream registry, shared by the proxy and membership checks.

Two ``aiohttp.ClientSession``s, each with a bounded pool, no cookie jar, no automatic
decompression and no proxy settings from the environment: one for requests relayed for
clients (``request``, at most ``upstream.max_connections`` at once), one for blobgate's
own questions (``check``: membership, sizes, the challenge, token exchanges; at most
``upstream.check_max_connections``). Clients cannot starve the checks: uploads that hold
every relay connection still leave blob GETs their membership HEADs.

A relayed request first takes one of the relay pool's places (``slot``); when none frees
within ``upstream.pool_timeout_s`` the client gets ``503`` with ``Retry-After`` instead of
waiting for ever. Two clocks: relayed requests may wait ``upstream.timeout_s`` between
bytes, since the registry can take minutes to finish a large upload after its last byte;
checks give up after ``upstream.check_timeout_s`` (their wait for a connection included),
because they decide whether a pull is redirected and must fail over to the pass-through
fast. ``translate_errors`` is the only place where aiohttp client failures become
blobgate's 502/504 errors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from blobgate.config import UpstreamConfig
from blobgate.config.tls import client_context
from blobgate.errors import RegistryError, UpstreamBusy, UpstreamTimeout, UpstreamUnavailable
from blobgate.ops.metrics import Stats
from blobgate.ops.tracing import propagate

log = logging.getLogger(__name__)


class Upstream:
    """The registry behind blobgate: its base URL and the two pooled HTTP sessions.

    ``client_body_timeout_s`` is how long a relayed request's body may go without a byte
    from the client (``server.client_body_timeout_s``, see ``bodies``).
    """

    def __init__(self, cfg: UpstreamConfig, session: aiohttp.ClientSession,
                 checks: aiohttp.ClientSession, stats: Stats,
                 client_body_timeout_s: float) -> None:
        self.cfg = cfg
        self.session = session
        self.checks = checks
        self.stats = stats
        self.client_body_timeout_s = client_body_timeout_s
        self.base = cfg.url.rstrip("/")
        self.origin = URL(cfg.url).origin()
        self._slots = asyncio.Semaphore(cfg.max_connections)
        self.check_timeout = aiohttp.ClientTimeout(
            total=cfg.check_timeout_s, sock_connect=min(cfg.connect_timeout_s,
                                                        cfg.check_timeout_s))

    def url(self, raw_path: str) -> URL:
        """The upstream URL for a raw (still percent-encoded) request path and query."""
        return URL(self.base + raw_path, encoded=True)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the relay pool's ``upstream.max_connections`` places, held while a
        relayed exchange uses its connection; ``UpstreamBusy`` (503) when none frees
        within ``upstream.pool_timeout_s``."""
        try:
            async with asyncio.timeout(self.cfg.pool_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise UpstreamBusy("every connection to the registry is in use",
                               math.ceil(self.cfg.pool_timeout_s)) from None
        try:
            yield
        finally:
            self._slots.release()

    async def request(
        self, method: str, target: str | URL, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        """Send a request relayed for a client, within a ``slot`` (redirects not
        followed); the caller releases the answer.

        ``target`` is a raw path on the upstream, or an absolute URL (a redirect target).
        """
        return await self._send(self.session, method, target, **kwargs)

    async def check(self, method: str, target: str | URL, **kwargs: Any
                    ) -> aiohttp.ClientResponse:
        """``request`` for blobgate's own questions, on the checks' own pool: the whole
        answer within ``upstream.check_timeout_s`` (read a body, if any, at once). The
        time to the answer's head (or to the failure) is observed: the registry's latency
        as a pull feels it, free of the body streaming that relayed requests include."""
        start = time.monotonic()
        try:
            return await self._send(self.checks, method, target,
                                    timeout=self.check_timeout, **kwargs)
        finally:
            self.stats.upstream_checks.observe(time.monotonic() - start)

    async def _send(self, session: aiohttp.ClientSession, method: str, target: str | URL,
                    **kwargs: Any) -> aiohttp.ClientResponse:
        url = self.url(target) if isinstance(target, str) else target
        if self.cfg.tls.server_name is not None and url.origin() == self.origin:
            kwargs["server_hostname"] = self.cfg.tls.server_name
        propagate(kwargs)  # the registry's spans join the request's trace
        try:
            async with translate_errors():
                response = await session.request(method, url, allow_redirects=False, **kwargs)
        except RegistryError:
            self.stats.upstream_status(None)
            raise
        self.stats.upstream_status(response.status)
        return response


def new_session(cfg: UpstreamConfig, limit: int, resolver: AbstractResolver | None = None
                ) -> aiohttp.ClientSession:
    """A session of at most ``limit`` connections configured for transparent proxying
    (and the upstream's TLS), with aiohttp's own resolver unless ``resolver`` is given."""
    https = cfg.url.startswith("https:")
    tls: ssl.SSLContext | bool = client_context(cfg.tls, "upstream.tls") if https else True
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, enable_cleanup_closed=True, ssl=tls,
                                   resolver=resolver),
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=cfg.connect_timeout_s, sock_read=cfg.timeout_s
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )


@asynccontextmanager
async def open_upstream(cfg: UpstreamConfig, stats: Stats, client_body_timeout_s: float
                        ) -> AsyncIterator[Upstream]:
    """The upstream with its relay and check sessions, closed when the context ends."""
    async with AsyncExitStack() as stack:
        relay = await stack.enter_async_context(new_session(cfg, cfg.max_connections))
        checks = await stack.enter_async_context(new_session(cfg, cfg.check_max_connections))
        yield Upstream(cfg, relay, checks, stats, client_body_timeout_s)


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn aiohttp client failures into ``UpstreamUnavailable`` / ``UpstreamTimeout``."""
    try:
        yield
    except TimeoutError:
        raise UpstreamTimeout("upstream registry did not answer in time") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        log.error("upstream TLS certificate rejected: %s", exc.certificate_error)
        raise UpstreamUnavailable(
            "upstream registry's TLS certificate is not trusted",
            {"reason": str(exc.certificate_error)[:200]},
        ) from None
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(
            "upstream registry unreachable", {"reason": type(exc).__name__}
        ) from None
