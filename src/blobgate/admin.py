"""The admin listener: operations that change what a running gateway holds
(``POST /admin/cache/flush``) or tell what it would decide (``POST /admin/explain``,
see ``explain``), on a port of their own and behind a bearer token.

A flush empties every replica's caches and scans Redis, so it must not be anyone's to
call. The listener (``admin.host``/``admin.port``, loopback by default) is apart from the
metrics port that Prometheus and the kubelet reach, and every request on it passes
``AdminToken.check``: the caller's ``Authorization: Bearer <token>`` must equal the token
in ``admin.token_file`` (a mounted Secret, re-read when it changes), compared in
constant time. Without a token file the endpoints are disabled: every request is refused
with ``403``, never served. Endpoints added to this listener later get the same check
from the application's middleware.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from blobgate.app import CONFIG, SERVICES
from blobgate.config import AdminConfig
from blobgate.errors import (
    AccessDenied,
    ConfigError,
    InvalidParameter,
    RegistryError,
    Unauthorized,
)
from blobgate.explain import Explainer, question_of, rootdirectory
from blobgate.health import GATEWAY

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
CHALLENGE = 'Bearer realm="blobgate-admin"'


class AdminToken:
    """The token admin callers present, loaded from ``path`` (``None``: admin disabled)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._token: bytes | None = None
        if path is not None:
            try:
                self.reload()
            except (OSError, ValueError) as exc:
                raise ConfigError("admin.token_file", str(exc)) from None

    @classmethod
    def from_config(cls, cfg: AdminConfig) -> AdminToken:
        return cls(None if cfg.token_file is None else Path(cfg.token_file))

    def reload(self) -> None:
        """Read the file again; raises (keeping the current token) when it holds none."""
        assert self.path is not None, "only a configured token file is reloaded"
        token = self.path.read_bytes().strip()
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"{self.path} must hold a token of at least "
                             f"{MIN_TOKEN_CHARS} characters")
        self._token = token

    def check(self, request: web.BaseRequest) -> None:
        """Pass only a request bearing the token; else raise the error to answer."""
        if self._token is None:
            raise AccessDenied("admin endpoints are disabled: admin.token_file is not set")
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthorized("admin endpoints need a bearer token", CHALLENGE)
        # A header aiohttp could not read as UTF-8 holds surrogates: never the token.
        if not hmac.compare_digest(presented.strip().encode(errors="surrogateescape"),
                                   self._token):
            log.warning("admin request with a wrong token from %s", request.remote)
            raise AccessDenied("the admin token is not valid")


TOKEN = web.AppKey("admin_token", AdminToken)


@web.middleware
async def admin_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request on the admin listener passes the token check first."""
    try:
        request.app[TOKEN].check(request)
    except RegistryError as exc:
        return exc.response()
    return await handler(request)


async def flush(request: web.Request) -> web.Response:
    """Drop every cached token, membership answer and URL, on every replica."""
    services = request.app[GATEWAY].get(SERVICES)
    if services is None:
        return web.json_response({"status": "starting"}, status=503)
    flushed = await services.replicas.flush()
    log.info("caches flushed on an admin request from %s: %s", request.remote, flushed)
    return web.json_response({"flushed": flushed})


async def explain(request: web.Request) -> web.Response:
    """What the gateway would answer a blob request, step by step (``explain``)."""
    services = request.app[GATEWAY].get(SERVICES)
    if services is None:
        return web.json_response({"status": "starting"}, status=503)
    try:
        question = question_of(await request.json())
    except ValueError as exc:
        return InvalidParameter(f"not a question: {exc}").response()
    explainer = Explainer(services.blobs, rootdirectory(request.app[GATEWAY][CONFIG].storage))
    return web.json_response(await explainer.explain(question))


def create_admin_app(gateway: web.Application, token: AdminToken) -> web.Application:
    """The admin app for ``gateway``, guarded by ``token``."""
    app = web.Application(middlewares=[admin_only])
    app[GATEWAY] = gateway
    app[TOKEN] = token
    app.router.add_post("/admin/cache/flush", flush)
    app.router.add_post("/admin/explain", explain)
    return app
