"""Names shared between the fixtures in tests/conftest.py and the tests that use them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

BUCKET = "registry"

GatewayFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
"""``await gateway(**config_sections)``: a running blobgate in front of the stand-in."""

Scrape = Callable[[TestClient[Any, Any]], Awaitable[dict[str, float]]]
"""``await scrape(gateway)``: its /metrics as ``{'name{label="v"}': value}``."""
