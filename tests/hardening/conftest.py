"""Fixtures of the hardening suite, on top of the shared ones in ``tests/conftest.py``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from support.standin import StandIn

Standin = tuple[StandIn, Any]


@pytest.fixture
def blob(put_blob: Callable[..., str], standin: Standin) -> tuple[str, bytes]:
    """A blob stored in S3 and known to the stand-in in ``library/a`` only."""
    data = os.urandom(4096)
    digest = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data
    return digest, data
