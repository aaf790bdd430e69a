"""Bare-aiohttp floors: the least any aiohttp server can do for the same job.

``redirect``: answers every request with a constant 307 carrying the headers blobgate
sends for a redirect. ``relay``: streams every GET from an origin, passing each piece on
as it arrives (``iter_any``). Both are a ``web.Application`` with one catch-all route on
aiohttp's server defaults and asyncio's loop (blobgate's default), so the gap to blobgate
is the cost of blobgate's own work. ``--loop uvloop`` runs them on uvloop; ``--low-level``
serves the handler with aiohttp's low-level ``web.Server`` (no router), as blobgate does.
Run as ``python -m bench.floor --port P [--loop L] [--low-level] redirect --location URL
--digest D`` or ``python -m bench.floor --port P relay --origin URL``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import uvloop
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
BACKLOG = 2048  # blobgate's default server.backlog


def redirect_handler(location: str, digest: str) -> Handler:
    """A handler that always redirects to ``location``."""
    headers = {
        "Location": location,
        "Docker-Content-Digest": digest,
        "Docker-Distribution-Api-Version": "registry/2.0",
    }

    async def redirect(request: web.BaseRequest) -> web.Response:
        return web.Response(status=307, headers=headers)

    return redirect


def app_of(handler: Handler) -> web.Application:
    """``handler`` as the catch-all route of an application."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
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


async def _serve(args: argparse.Namespace) -> None:
    runner: web.BaseRunner
    if args.kind == "relay":
        runner = web.AppRunner(relay_app(args.origin), access_log=None)
    elif args.low_level:
        runner = web.ServerRunner(web.Server(redirect_handler(args.location, args.digest),
                                             access_log=None))
    else:
        runner = web.AppRunner(app_of(redirect_handler(args.location, args.digest)),
                               access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, backlog=BACKLOG).start()
    await asyncio.Event().wait()


def main() -> None:
    """Serve on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(description="bare-aiohttp floors")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--low-level", action="store_true", help="redirect only: web.Server")
    kinds = parser.add_subparsers(dest="kind", required=True)
    redirect = kinds.add_parser("redirect")
    redirect.add_argument("--location", required=True)
    redirect.add_argument("--digest", required=True)
    kinds.add_parser("relay").add_argument("--origin", required=True)
    args = parser.parse_args()
    loop = uvloop.new_event_loop if args.loop == "uvloop" else None
    with asyncio.Runner(loop_factory=loop) as running:
        running.run(_serve(args))


if __name__ == "__main__":
    main()
