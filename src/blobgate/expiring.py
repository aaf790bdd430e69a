"""One bounded, expiring cache type for tokens, URLs and membership answers.

Each entry carries its own expiry (a ``ttu`` function computes it when stored), and
the cache counts hits, misses and capacity evictions so the metrics endpoint can
report them without any work on the request path beyond an integer increment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TLRUCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Evicting(TLRUCache[K, V]):
    evictions = 0

    def popitem(self) -> tuple[K, V]:
        self.evictions += 1
        return super().popitem()


class ExpiringCache(Generic[K, V]):
    """A size-bounded map whose entries vanish at the time ``expires_at(value)`` gives."""

    def __init__(
        self,
        maxsize: int,
        expires_at: Callable[[V], float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._data: _Evicting[K, V] = _Evicting(
            maxsize, lambda _key, value, _now: expires_at(value), timer=clock
        )
        self.hits = 0
        self.misses = 0

    @property
    def evictions(self) -> int:
        """Entries dropped to make room (not counting expiry)."""
        return self._data.evictions

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        """The live value for ``key``, counting a hit or a miss."""
        value = self._data.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def peek(self, key: K) -> V | None:
        """The live value for ``key`` without counting a lookup."""
        return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        """Store ``value``; it expires when its ``expires_at`` says."""
        self._data[key] = value

    def pop(self, key: K) -> None:
        """Forget ``key`` if present."""
        self._data.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()
