"""Names shared between the fixtures in tests/conftest.py and the tests that use them, and
the test server that runs a gateway the way ``blobgate serve`` does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestClient

from blobgate.app import GatewayRunner

BUCKET = "registry"

GatewayFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
"""``await gateway(**config_sections)``: a running blobgate in front of the stand-in."""

Scrape = Callable[[TestClient[Any, Any]], Awaitable[dict[str, float]]]
"""``await scrape(gateway)``: its /metrics as ``{'name{label="v"}': value}``."""


class GatewayTestServer(BaseTestServer):
    """``aiohttp.test_utils.TestServer`` for a gateway application: served by
    ``GatewayRunner``, as in production."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return GatewayRunner(self.app, **kwargs)
