"""Client request bodies, read with an idle limit.

aiohttp's server bounds the wait for a request's head (``server.keepalive_timeout_s``)
but not for its body: a client that sends its headers and a few bytes, then nothing,
would hold its handler (and, for a relayed upload, one of the registry connections)
for ever. Every body blobgate reads goes through ``ClientBody``: when no byte has come
for ``server.client_body_timeout_s`` the read fails with ``ClientBodyTimeout`` (408).
The limit is on silence, like nginx's ``client_body_timeout``: a large push that keeps
sending is never cut, however long it takes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from blobgate.errors import ClientBodyTimeout, InvalidParameter

log = logging.getLogger(__name__)


class ClientBody:
    """A request's body as it arrives (an async iterable of chunks, for aiohttp's client
    to send on); a wait of more than ``idle_s`` for the next chunk ends it.

    aiohttp's client reports a body that failed as a connection error of its own;
    ``timed_out`` keeps what really happened for the caller to answer with.
    """

    def __init__(self, request: web.BaseRequest, idle_s: float) -> None:
        self._content = request.content
        self._idle_s = idle_s
        self.timed_out: ClientBodyTimeout | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(self._idle_s):
                    chunk = await self._content.readany()
            except TimeoutError:
                log.info("closing a request whose body sent nothing for %ss", self._idle_s)
                self.timed_out = ClientBodyTimeout(
                    f"no byte of the request body arrived for {self._idle_s} seconds")
                raise self.timed_out from None
            if not chunk:
                return
            yield chunk


async def read_body(request: web.BaseRequest, idle_s: float, limit: int) -> bytes:
    """The whole body of a request blobgate answers itself, of at most ``limit`` bytes."""
    body = bytearray()
    async for chunk in ClientBody(request, idle_s):
        body += chunk
        if len(body) > limit:
            raise InvalidParameter(f"the body must not be larger than {limit} bytes")
    return bytes(body)
