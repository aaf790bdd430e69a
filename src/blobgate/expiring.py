"""One bounded, expiring cache type for tokens, URLs and membership answers.

An ordered dict: each entry carries its own expiry (``expires_at(value)`` when stored),
a lookup is one dict access and one clock read, and when the cache is full the oldest
entry goes first in constant time (a plain dict's ``next(iter(...))`` would rescan the
slots its earlier evictions left empty). Hits, misses and evictions are counted for the
metrics endpoint, so the request path pays an integer increment and nothing more.

A cache whose entries grow with what a client sends (tokens) is also bounded by weight:
``weigh(key, value)`` estimates an entry's bytes when it is stored, and the oldest entries
go until the total fits ``max_weight``. Only ``put`` pays for it; lookups do not.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """A size-bounded map whose entries vanish at the time ``expires_at(value)`` gives."""

    def __init__(
        self,
        maxsize: int,
        expires_at: Callable[[V], float],
        clock: Callable[[], float] = time.time,
        weigh: Callable[[K, V], int] | None = None,
        max_weight: int = 0,
    ) -> None:
        self._maxsize = maxsize
        self._expires_at = expires_at
        self._clock = clock
        self._weigh = weigh
        self._max_weight = max_weight
        self.weight = 0  # the entries' estimated bytes, with ``weigh``
        self._data: OrderedDict[K, tuple[V, float, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def peek(self, key: K) -> V | None:
        """The live value for ``key`` without counting a lookup."""
        entry = self._data.get(key)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def found(self, key: K) -> V | None:
        """The live value for ``key``, counting a hit when there is one and nothing when
        there is not (for a fast path whose caller looks again with ``get`` on a miss)."""
        entry = self._data.get(key)
        if entry is None or entry[1] <= self._clock():
            return None
        self.hits += 1
        return entry[0]

    def get(self, key: K) -> V | None:
        """The live value for ``key``, counting a hit or a miss."""
        entry = self._data.get(key)
        if entry is not None:
            if entry[1] > self._clock():
                self.hits += 1
                return entry[0]
            self.pop(key)
        self.misses += 1
        return None

    def put(self, key: K, value: V) -> None:
        """Store ``value``; it expires when its ``expires_at`` says."""
        data = self._data
        self.pop(key)  # re-inserted last: the freshest entry goes last
        weight = 0 if self._weigh is None else self._weigh(key, value)
        while data and (len(data) >= self._maxsize
                        or (weight and self.weight + weight > self._max_weight)):
            self.weight -= data.popitem(last=False)[1][2]
            self.evictions += 1
        data[key] = (value, self._expires_at(value), weight)
        self.weight += weight

    def pop(self, key: K) -> None:
        """Forget ``key`` if present."""
        entry = self._data.pop(key, None)
        if entry is not None:
            self.weight -= entry[2]

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()
        self.weight = 0
