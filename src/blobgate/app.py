"""The gateway application: its one handler, the choice of path for each request, and
how it is served.

A regular expression on the raw path picks one of three paths: a blob GET/HEAD goes to
``BlobService``, the URL API's paths to ``UrlApi``, anything else to the pass-through proxy.
The registry's answers to a token's manifest and tag requests tell the gate what the
registry makes of that token; an image manifest may go to the warmer; a successful
``DELETE`` invalidates what blobgate cached. The ``web.Application`` holds
configuration, metrics and services (opened and closed with it); ``GatewayRunner``
serves its ``Dispatcher`` with aiohttp's low-level server, since there is nothing for a
router to choose.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from blobgate.auth.keys import KeyBundleError, TrustedKeys
from blobgate.backends.choice import presign_target
from blobgate.config import Config
from blobgate.errors import BlobgateError, ConfigError, RegistryError
from blobgate.ops.accesslog import LINES, info_of
from blobgate.ops.audit import AUDIT
from blobgate.ops.logs import STDERR, LineWriter
from blobgate.ops.metrics import STATS, Stats
from blobgate.ops.traced import served
from blobgate.ops.tracing import traces
from blobgate.reference import BlobRef, blob_path, parse_blob
from blobgate.registry.proxy import forward, request_target
from blobgate.routing.policy import TRUSTED
from blobgate.services import Services, open_services
from blobgate.warmup import MANIFEST_PATH

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
KEYS = web.AppKey("keys", TrustedKeys)
SERVICES = web.AppKey("services", Services)


def load_keys(cfg: Config) -> TrustedKeys:
    """The token-signing certificates, or a ``ConfigError`` naming ``auth.certificates``."""
    try:
        return TrustedKeys.from_file(Path(cfg.auth.certificates))
    except KeyBundleError as exc:
        raise ConfigError("auth.certificates", str(exc)) from None


def check_presign_host(cfg: Config) -> None:
    """Refuse presigned URLs whose host is a gateway host or under one (unless opted in),
    for the registry's store and each copy."""
    stores = [("storage.", cfg.storage), *((f"storage.copies[{i}].", cfg.storage.of_copy(c))
                                          for i, c in enumerate(cfg.storage.copies))]
    for prefix, storage in stores:
        target = presign_target(storage)
        if target is None:
            continue
        host, key = target.host, prefix + target.key.removeprefix("storage.")
        for public in cfg.server.public_hosts:
            if host == public or host.endswith("." + public):
                why = (
                    f"presigned URLs would go to {host}, which is {public} or under it: Go "
                    "clients would send their Bearer token to storage, which rejects such "
                    "requests"
                )
                if not target.allow_gateway_host:
                    raise ConfigError(key, why)
                log.warning("%s (allowed by %s)", why,
                            key.rpartition(".")[0] + ".unsafe_allow_gateway_host")


async def _services(app: web.Application) -> AsyncIterator[None]:
    async with open_services(app[CONFIG], app[KEYS], app[STATS], app[LINES]) as services:
        app[SERVICES] = services
        app[AUDIT] = services.audit  # read by the access-log hook
        app[TRUSTED] = services.blobs.policy.trusted  # so is this
        yield


def _deleted(target: str) -> BlobRef | None:
    """The blob or manifest (by digest) a DELETE names, if any."""
    try:
        blob = blob_path(target)
        if blob is not None:
            return blob
        manifest = MANIFEST_PATH.fullmatch(target.partition("?")[0])
        return None if manifest is None else parse_blob(manifest[1], manifest[2])
    except BlobgateError:
        return None  # a tag, or nothing blobgate caches


def invalidate(services: Services, target: str) -> None:
    """Forget what a successful DELETE of a blob or manifest made stale, on every replica."""
    ref = _deleted(target)
    if ref is None:
        return
    learnt = services.warmer.forget(ref) if services.warmer is not None else ()
    services.replicas.forget((ref, *learnt))


class Dispatcher:
    """The gateway's one request handler: routes each request to its path and renders
    blobgate's own errors. It reads its application's services, opened at start-up."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._stats = app[STATS]

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        stats = self._stats
        stats.in_flight += 1
        try:
            services = self._app[SERVICES]
            target = request_target(request)
            if request.method in ("GET", "HEAD"):
                blob = _blob_of(request, target)
                if blob is not None:
                    return await services.blobs.handle(request, blob)
            info_of(request)  # every request a handler saw has one (the access hook checks)
            return await _other(request, services, target)
        except RegistryError as exc:
            info = info_of(request)
            info.outcome = "invalid" if exc.status == 400 else "error"
            info.reason = info.reason or exc.code.lower()
            return exc.response()
        finally:
            stats.in_flight -= 1


def _blob_of(request: web.BaseRequest, target: str) -> BlobRef | None:
    """The blob a GET/HEAD names, if any (a blob path with a bad part is a blob request)."""
    try:
        return blob_path(target)
    except RegistryError:
        info_of(request).route = "blob"
        raise


async def _other(request: web.BaseRequest, services: Services, target: str
                 ) -> web.StreamResponse:
    """The URL API, or the registry's own answer."""
    if services.api is not None and target.startswith("/api/"):
        answer = await services.api.route(request, target)
        if answer is not None:
            return answer
    gate, warmer = services.blobs.gate, services.warmer
    pull = gate.pull_of(request, target)
    observer = None if warmer is None or pull is None else warmer.observer(request, pull)
    response = await forward(request, services.upstream, observer)
    if pull is not None:
        gate.learn(pull, response.status)
    if request.method == "DELETE" and 200 <= response.status < 300:
        invalidate(services, target)
    return response


class GatewayRunner(web.BaseRunner):
    """Serves a gateway application with aiohttp's low-level server.

    Requests go straight to the ``Dispatcher``: no router, no middleware chain, no match
    info (which cost about 10 µs a request, a third of a bare aiohttp handler's time).
    Start-up and clean-up run the application's signals as ``web.AppRunner`` does.
    """

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app

    async def shutdown(self) -> None:
        await self.app.shutdown()

    async def _make_server(self) -> web.Server:
        self.app.on_startup.freeze()
        await self.app.startup()
        self.app.freeze()
        return web.Server(served(self.app[DISPATCHER]), **self._kwargs)

    async def _cleanup_server(self) -> None:
        await self.app.cleanup()


DISPATCHER = web.AppKey("dispatcher", Dispatcher)


def create_app(cfg: Config, keys: TrustedKeys, lines: LineWriter = STDERR) -> web.Application:
    """The gateway application for ``cfg``, trusting token certificates ``keys``, writing
    its access and audit lines to ``lines``; serve it with ``GatewayRunner``."""
    check_presign_host(cfg)
    app = web.Application()
    app[CONFIG] = cfg
    app[KEYS] = keys
    app[LINES] = lines
    app[STATS] = Stats()
    app[DISPATCHER] = Dispatcher(app)
    if cfg.tracing.enabled:
        app.cleanup_ctx.append(traces)  # before the services: their steps are traced
    app.cleanup_ctx.append(_services)
    return app
