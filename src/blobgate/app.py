"""The aiohttp application: one catch-all route, and the choice of path for each request.

A regular expression on the raw path picks one of three paths: a blob GET/HEAD goes to
``BlobService``, ``/api/v1/`` to the URL API, anything else to the pass-through proxy
(which may show an image manifest to the warmer, and whose successful ``DELETE``s
invalidate what blobgate cached). Services are opened and closed with the app.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from blobgate.accesslog import info_of
from blobgate.api import BATCH_PATH, URL_PATH, UrlApi
from blobgate.audit import AUDIT
from blobgate.config import Config
from blobgate.errors import BlobgateError, ConfigError, RegistryError
from blobgate.keys import KeyBundleError, TrustedKeys
from blobgate.metrics import STATS, Stats
from blobgate.proxy import forward, request_target
from blobgate.reference import BlobRef, match_blob_path, parse_blob
from blobgate.services import Services, open_services
from blobgate.storage import presign_host
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
    """Refuse presigned URLs whose host is a gateway host or under one (unless opted in)."""
    host = presign_host(cfg.storage.s3)
    for public in cfg.server.public_hosts:
        if host == public or host.endswith("." + public):
            why = (
                f"presigned URLs would go to {host}, which is {public} or under it: Go clients "
                "would send their Bearer token to S3, which rejects such requests"
            )
            if not cfg.storage.s3.unsafe_allow_gateway_host:
                raise ConfigError("storage.s3.public_endpoint_url", why)
            log.warning("%s (allowed by storage.s3.unsafe_allow_gateway_host)", why)


async def _services(app: web.Application) -> AsyncIterator[None]:
    async with open_services(app[CONFIG], app[KEYS], app[STATS]) as services:
        app[SERVICES] = services
        app[AUDIT] = services.audit  # read by the access-log hook
        yield


async def _api(request: web.Request, api: UrlApi, target: str) -> web.StreamResponse | None:
    path = target.partition("?")[0]
    match = URL_PATH.fullmatch(path)
    if request.method == "GET" and match is not None:
        return await api.one(request, match[1])
    if request.method == "POST" and path == BATCH_PATH:
        return await api.batch(request)
    return None


def _deleted(target: str) -> BlobRef | None:
    """The blob or manifest (by digest) a DELETE names, if any."""
    path = target.partition("?")[0]
    parts = match_blob_path(path)
    if parts is None:
        manifest = MANIFEST_PATH.fullmatch(path)
        parts = None if manifest is None else (manifest[1], manifest[2])
    try:
        return None if parts is None else parse_blob(*parts)
    except BlobgateError:
        return None  # a tag, or nothing blobgate caches


def invalidate(services: Services, target: str) -> None:
    """Forget what a successful DELETE of a blob or manifest made stale."""
    ref = _deleted(target)
    if ref is None:
        return
    learnt = services.warmer.forget(ref) if services.warmer is not None else ()
    for each in (ref, *learnt):
        services.blobs.forget(each)


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route a request to its path, and render blobgate's own errors."""
    app = request.app
    stats = app[STATS]
    stats.in_flight += 1
    info = info_of(request)  # its presence tells the access hook a handler ran
    try:
        services = app[SERVICES]
        target = request_target(request)
        if request.method in ("GET", "HEAD"):
            blob = match_blob_path(target)
            if blob is not None:
                return await services.blobs.handle(request, *blob)
        if services.api is not None and target.startswith("/api/v1/"):
            answer = await _api(request, services.api, target)
            if answer is not None:
                return answer
        warmer = services.warmer
        observer = warmer.observer(request) if warmer is not None else None
        response = await forward(request, services.upstream, observer)
        if request.method == "DELETE" and 200 <= response.status < 300:
            invalidate(services, target)
        return response
    except RegistryError as exc:
        info.outcome = "invalid" if exc.status == 400 else "error"
        return exc.response()
    finally:
        stats.in_flight -= 1


def create_app(cfg: Config, keys: TrustedKeys) -> web.Application:
    """The gateway application for ``cfg``, trusting token certificates ``keys``."""
    check_presign_host(cfg)
    app = web.Application()
    app[CONFIG] = cfg
    app[KEYS] = keys
    app[STATS] = Stats()
    app.cleanup_ctx.append(_services)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
