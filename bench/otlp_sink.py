"""A collector stand-in for benchmarks with tracing on: accepts every OTLP/HTTP export
(``POST /v1/traces``) with an empty success answer and keeps nothing, so what is
measured is blobgate's cost of making and sending spans, not a collector's.
Run as ``python -m bench.otlp_sink --port P``.
"""

from __future__ import annotations

import argparse

from aiohttp import web

EMPTY_SUCCESS = b""  # an ExportTraceServiceResponse with no fields, serialized


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=EMPTY_SUCCESS, content_type="application/x-protobuf")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/v1/traces", accept)
    app.router.add_get("/", accept)  # readiness
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
