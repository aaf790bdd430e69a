"""The connection to the upstream registry, shared by the proxy and membership checks.

One ``aiohttp.ClientSession`` with a bounded pool, no cookie jar, no automatic
decompression and no proxy settings from the environment. Two clocks: requests relayed
for clients (``request``) may wait ``upstream.timeout_s`` between bytes, since the
registry can take minutes to finish a large upload after its last byte; blobgate's own
questions (``check``: membership, sizes, the challenge) give up after
``upstream.check_timeout_s``, because they decide whether a pull is redirected and must
fail over to the pass-through fast. ``translate_errors`` is the only place where aiohttp
client failures become blobgate's 502/504 errors.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from blobgate.config import UpstreamConfig
from blobgate.errors import RegistryError, UpstreamTimeout, UpstreamUnavailable
from blobgate.metrics import Stats
from blobgate.tls import client_context

log = logging.getLogger(__name__)


class Upstream:
    """The registry behind blobgate: its base URL and a pooled HTTP session."""

    def __init__(self, cfg: UpstreamConfig, session: aiohttp.ClientSession, stats: Stats) -> None:
        self.cfg = cfg
        self.session = session
        self.stats = stats
        self.base = cfg.url.rstrip("/")
        self.origin = URL(cfg.url).origin()
        self.check_timeout = aiohttp.ClientTimeout(
            total=cfg.check_timeout_s, sock_connect=min(cfg.connect_timeout_s,
                                                        cfg.check_timeout_s))

    def url(self, raw_path: str) -> URL:
        """The upstream URL for a raw (still percent-encoded) request path and query."""
        return URL(self.base + raw_path, encoded=True)

    async def request(
        self, method: str, target: str | URL, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        """Send a request (redirects not followed); the caller releases the answer.

        ``target`` is a raw path on the upstream, or an absolute URL (a redirect target).
        """
        url = self.url(target) if isinstance(target, str) else target
        if self.cfg.tls.server_name is not None and url.origin() == self.origin:
            kwargs["server_hostname"] = self.cfg.tls.server_name
        try:
            async with translate_errors():
                response = await self.session.request(
                    method, url, allow_redirects=False, **kwargs
                )
        except RegistryError:
            self.stats.upstream_status(None)
            raise
        self.stats.upstream_status(response.status)
        return response

    async def check(self, method: str, target: str | URL, **kwargs: Any
                    ) -> aiohttp.ClientResponse:
        """``request`` for blobgate's own questions: the whole answer within
        ``upstream.check_timeout_s`` (read a body, if any, at once). The time to the
        answer's head (or to the failure) is observed: the registry's latency as a pull
        feels it, free of the body streaming that relayed requests include."""
        start = time.monotonic()
        try:
            return await self.request(method, target, timeout=self.check_timeout, **kwargs)
        finally:
            self.stats.upstream_checks.observe(time.monotonic() - start)

    @staticmethod
    def new_session(
        cfg: UpstreamConfig, resolver: AbstractResolver | None = None
    ) -> aiohttp.ClientSession:
        """A session configured for transparent proxying (and the upstream's TLS), with
        aiohttp's own resolver unless ``resolver`` is given."""
        https = cfg.url.startswith("https:")
        tls: ssl.SSLContext | bool = client_context(cfg.tls, "upstream.tls") if https else True
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=cfg.max_connections, enable_cleanup_closed=True, ssl=tls,
                resolver=resolver,
            ),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=cfg.connect_timeout_s, sock_read=cfg.timeout_s
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )


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
