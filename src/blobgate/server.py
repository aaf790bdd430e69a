"""Running the gateway: the public listener, the private metrics listener, and shutdown.

On SIGTERM or SIGINT blobgate stops accepting connections, gives in-flight requests up
to ``server.shutdown_grace_s`` to finish, then closes its clients (flushing what they
hold) and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from blobgate.accesslog import AccessLogger
from blobgate.app import create_app
from blobgate.config import Config
from blobgate.health import create_metrics_app
from blobgate.keys import TrustedKeys

log = logging.getLogger(__name__)


async def _start(runner: web.AppRunner, host: str, port: int) -> None:
    await runner.setup()
    await web.TCPSite(runner, host, port).start()


async def run(cfg: Config, keys: TrustedKeys) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully."""
    access = logging.getLogger("blobgate.access")
    if not cfg.log.access_log:
        access.setLevel(logging.WARNING)
    gateway = create_app(cfg, keys)
    runner = web.AppRunner(
        gateway,
        access_log=access,
        access_log_class=AccessLogger,
        handle_signals=False,
        handler_cancellation=True,  # a client that hangs up stops the origin read at once
        shutdown_timeout=cfg.server.shutdown_grace_s,
    )
    runners = [runner]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await _start(runner, cfg.server.host, cfg.server.port)
        if cfg.metrics.enabled:
            metrics = web.AppRunner(create_metrics_app(gateway), access_log=None)
            runners.append(metrics)
            await _start(metrics, cfg.metrics.host, cfg.metrics.port)
        log.info("serving on %s:%d, upstream %s", cfg.server.host, cfg.server.port,
                 cfg.upstream.url)
        await stop.wait()
        log.info("shutting down: draining requests for up to %ss", cfg.server.shutdown_grace_s)
    finally:
        for each in runners:
            await each.cleanup()
    log.info("stopped")
