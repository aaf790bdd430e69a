"""Waiting for a state to be reached, with a generous deadline and no fixed sleep: the
time it took is returned (to print), never compared with a threshold."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(condition: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> float:
    """Seconds until ``await condition()`` held; fails after ``within_s``."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < within_s, f"not reached within {within_s} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - started
