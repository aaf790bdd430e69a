"""A reverse proxy on loopback that sends every request on from a chosen source address
with an ``X-Forwarded-For`` it appends, as a load balancer in front of blobgate does; it
follows no redirect, so clients meet the gateway's 307s themselves."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from blobgate.devstack.procs import free_port

_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host",
                  "te", "trailer", "upgrade", "proxy-authorization", "content-encoding"})


class XFFProxy:
    """Listens on 127.0.0.1:``port``; connects to ``target`` from ``source``; claims every
    client is ``client``."""

    def __init__(self, target: str, source: str, client: str) -> None:
        self.target, self.source, self.client = target.rstrip("/"), source, client
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _forward(self, request: web.Request) -> web.Response:
        headers = CIMultiDict((k, v) for k, v in request.headers.items()  # repeats kept
                              if k.lower() not in _HOP)
        headers["X-Forwarded-For"] = self.client
        headers["Host"] = self.host
        connector = aiohttp.TCPConnector(local_addr=(self.source, 0), force_close=True)
        body = await request.read()
        async with (aiohttp.ClientSession(connector=connector, auto_decompress=False) as session,
                    session.request(request.method, self.target + request.path_qs,
                                    headers=headers, data=body, allow_redirects=False) as reply):
            kept = CIMultiDict((k, v) for k, v in reply.headers.items() if k.lower() not in _HOP)
            return web.Response(status=reply.status, headers=kept, body=await reply.read())

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> XFFProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
