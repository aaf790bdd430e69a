"""Bare-aiohttp floors: the least any aiohttp + uvloop server can do for the same job.

``redirect``: answers every request with a constant 307 carrying the headers blobgate
sends for a redirect. ``relay``: streams every GET from an origin, passing each piece on
as it arrives (``iter_any``). Both use blobgate's catch-all route, event loop (uvloop)
and aiohttp server defaults, so the gap to blobgate is the cost of blobgate's own work.
Run as ``python -m bench.floor --port P redirect --location URL --digest D`` or
``python -m bench.floor --port P relay --origin URL``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)


def redirect_app(location: str, digest: str) -> web.Application:
    """An app that always redirects to ``location``."""
    headers = {
        "Location": location,
        "Docker-Content-Digest": digest,
        "Docker-Distribution-Api-Version": "registry/2.0",
    }

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=307, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app


def relay_app(origin: str) -> web.Application:
    """An app that streams ``origin`` + the request path to the client."""

    async def relay(request: web.Request) -> web.StreamResponse:
        async with request.app[SESSION].get(origin + request.raw_path) as upstream:
            response = web.StreamResponse(status=upstream.status)
            response.content_length = upstream.content_length
            await response.prepare(request)
            async for piece in upstream.content.iter_any():
                await response.write(piece)
            await response.write_eof()
            return response

    async def session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(auto_decompress=False) as opened:
            app[SESSION] = opened
            yield

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_route("GET", "/{tail:.*}", relay)
    return app


async def _serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    """Serve on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(description="bare-aiohttp floors")
    parser.add_argument("--port", type=int, required=True)
    kinds = parser.add_subparsers(dest="kind", required=True)
    redirect = kinds.add_parser("redirect")
    redirect.add_argument("--location", required=True)
    redirect.add_argument("--digest", required=True)
    kinds.add_parser("relay").add_argument("--origin", required=True)
    args = parser.parse_args()
    app = (redirect_app(args.location, args.digest) if args.kind == "redirect"
           else relay_app(args.origin))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(app, args.port))


if __name__ == "__main__":
    main()
