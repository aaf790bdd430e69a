"""Invalidation messages as blobgate publishes them, for tests that publish their own."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any


def message(body: dict[str, Any], at: float | None = None, name: str | None = None) -> bytes:
    """``body`` with when it was sent (``at``, now by default) and which message it is
    (``id``, a new one by default), JSON-encoded: what the sealed part of a message holds."""
    return json.dumps({**body, "at": time.time() if at is None else at,
                       "id": name or secrets.token_hex(8)}).encode()
