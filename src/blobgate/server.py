"""Running the gateway: listeners, worker processes, event loop, and shutdown.

With ``server.workers: N`` the parent forks N processes that share the public port
(SO_REUSEPORT); worker ``i`` serves its own metrics on ``metrics.port + i`` and its admin
endpoints on ``admin.port + i``. The event
loop is asyncio's own, or uvloop's with ``server.event_loop: uvloop``. On
SIGTERM or SIGINT each worker stops accepting connections, gives in-flight requests up
to ``server.shutdown_grace_s`` to finish, closes its clients (flushing what they hold)
and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from blobgate.admin import AdminToken, create_admin_app
from blobgate.app import GatewayRunner, create_app
from blobgate.auth.keys import TrustedKeys
from blobgate.config import Config, ServerTLSConfig
from blobgate.config.tls import ServedCertificate
from blobgate.health import create_metrics_app
from blobgate.ops.accesslog import LINES, AccessLogger
from blobgate.ops.metrics import STATS, Stats
from blobgate.ops.watch import FileWatcher

log = logging.getLogger(__name__)


async def _start(
    runner: web.BaseRunner,
    host: str,
    port: int,
    tls: ServedCertificate | None,
    reuse_port: bool = False,
    backlog: int = 128,
) -> None:
    await runner.setup()
    context = tls.context if tls is not None else None
    await web.TCPSite(runner, host, port, reuse_port=reuse_port or None, ssl_context=context,
                      backlog=backlog).start()


def _watch(name: str, paths: list[Path], apply: Callable[[], None], interval_s: float,
           stats: Stats, tasks: list[asyncio.Task[None]]) -> None:
    """Reload ``paths`` with ``apply`` when they change (every ``interval_s``; 0: never)."""
    if interval_s > 0:
        watcher = FileWatcher(name, paths, apply, stats, interval_s)
        tasks.append(asyncio.create_task(watcher.run()))


def _served(cfg: ServerTLSConfig, key: str, stats: Stats, tasks: list[asyncio.Task[None]]
            ) -> ServedCertificate | None:
    """The listener's certificate, watched for rotation, or ``None`` for plain HTTP."""
    if not cfg.enabled:
        return None
    served = ServedCertificate(cfg, key)
    _watch(key.replace(".", "_"), served.paths, served.reload, cfg.reload_interval_s, stats,
           tasks)
    return served


async def _start_private(cfg: Config, gateway: web.Application, worker: int,
                         runners: list[web.BaseRunner], tasks: list[asyncio.Task[None]]
                         ) -> None:
    """The metrics listener and the admin listener of ``worker``, as configured."""
    stats = gateway[STATS]
    if cfg.metrics.enabled:
        metrics = web.AppRunner(create_metrics_app(gateway), access_log=None)
        runners.append(metrics)
        tls = _served(cfg.metrics.tls, "metrics.tls", stats, tasks)
        await _start(metrics, cfg.metrics.host, cfg.metrics.port + worker, tls)
    if cfg.admin.enabled:
        token = AdminToken.from_config(cfg.admin)
        if token.path is not None:
            _watch("admin_token", [token.path], token.reload, cfg.admin.reload_interval_s,
                   stats, tasks)
        admin = web.AppRunner(create_admin_app(gateway, token), access_log=None)
        runners.append(admin)
        tls = _served(cfg.admin.tls, "admin.tls", stats, tasks)
        await _start(admin, cfg.admin.host, cfg.admin.port + worker, tls)


async def run(cfg: Config, keys: TrustedKeys, worker: int = 0) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully."""
    gateway = create_app(cfg, keys)
    runner = GatewayRunner(
        gateway,
        access_log=logging.getLogger("blobgate.access"),
        access_log_class=AccessLogger.bound(gateway, cfg.log.access_log),
        handle_signals=False,
        handler_cancellation=True,  # a client that hangs up stops the origin read at once
        shutdown_timeout=cfg.server.shutdown_grace_s,
        # Closes idle connections and, from the start of a connection, request heads that
        # have not arrived by then (slowloris).
        keepalive_timeout=cfg.server.keepalive_timeout_s,
    )
    runners: list[web.BaseRunner] = [runner]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    lines = gateway[LINES]
    lines.bind(loop, shared=cfg.server.workers > 1)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    shared = cfg.server.workers > 1
    watchers: list[asyncio.Task[None]] = []
    stats = gateway[STATS]
    try:
        tls = _served(cfg.server.tls, "server.tls", stats, watchers)
        await _start(runner, cfg.server.host, cfg.server.port, tls, shared, cfg.server.backlog)
        # What start-up built (botocore's models, keys, clients: ~170k objects) lives as
        # long as the process. Frozen, it is out of the collector's sight: a full
        # collection, rare under steady load, then stalls the loop for well under a
        # millisecond instead of 40-60 ms (measured in-process).
        gc.freeze()
        await _start_private(cfg, gateway, worker, runners, watchers)
        log.info("serving on %s:%d, upstream %s", cfg.server.host, cfg.server.port,
                 cfg.upstream.url)
        await stop.wait()
        log.info("shutting down: draining requests for up to %ss", cfg.server.shutdown_grace_s)
    finally:
        for task in watchers:
            task.cancel()
        for each in runners:
            await each.cleanup()
        log.info("stopped")
        lines.bind(None)


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop for ``uvloop`` (its presence is checked with the configuration),
    else asyncio's own."""
    if choice != "uvloop":
        return None
    import uvloop

    return uvloop.new_event_loop


def _run_one(cfg: Config, keys: TrustedKeys, worker: int) -> None:
    with asyncio.Runner(loop_factory=_loop_factory(cfg.server.event_loop)) as runner:
        runner.run(run(cfg, keys, worker))


def serve(cfg: Config, keys: TrustedKeys) -> int:
    """Run one worker in this process, or fork ``server.workers`` and wait for them."""
    if cfg.server.workers == 1:
        _run_one(cfg, keys, 0)
        return 0
    children = []
    for worker in range(cfg.server.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run_one(cfg, keys, worker)
            except BaseException:
                log.exception("worker %d failed", worker)
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    return 0 if all(code == 0 for code in codes) else 1
