"""The registry stand-in (``support.standin``) as its own process, for gateways that run as
subprocesses and outlive one test's event loop.

Run as ``python -m hardening.standin_process --port P --blobs blobs.json`` with ``tests/``
on ``PYTHONPATH``; ``blobs.json`` lists ``{"name", "digest", "file"}`` entries. Besides the
stand-in's own routes it answers ``/delay/<seconds>`` after that many seconds (a slow
pass-through).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from support.standin import StandIn

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build(blobs: list[dict[str, str]], head_redirects: bool) -> web.Application:
    """The stand-in app with ``blobs`` loaded and the extra routes in front."""
    state = StandIn(head_redirects=head_redirects)
    for entry in blobs:
        state.blobs[(entry["name"], entry["digest"])] = Path(entry["file"]).read_bytes()

    @web.middleware
    async def extra(request: web.Request, handler: Handler) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        if parts[0] == "delay" and len(parts) == 2:
            await asyncio.sleep(float(parts[1]))
            return web.Response(text=f"waited {parts[1]}s")
        return await handler(request)

    app = state.app()
    app.middlewares.append(extra)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--blobs", type=Path, required=True)
    parser.add_argument("--head-redirects", action="store_true")
    args = parser.parse_args()
    blobs = json.loads(args.blobs.read_text())
    web.run_app(build(blobs, args.head_redirects), host="127.0.0.1", port=args.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
