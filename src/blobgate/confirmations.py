"""Which tokens the registry itself has accepted, for which repositories.

A token that verifies is not yet a token the registry would honour: Harbor refuses
tokens without ``iat`` or issued before the project was (re)created, and registries and
auth proxies refuse revoked sessions or disabled accounts for reasons blobgate cannot
see. So blobgate serves a token only for a repository the registry has accepted that
very token for. It learns that from the registry's own answers to that token: the
manifest ``GET``/``HEAD`` every pull starts with (passed through, so free), or the one
membership ``HEAD`` blobgate sends with the token when it has nothing else to go on.

An acceptance is kept per (``Authorization`` value, repository) until the token expires
or ``ttl_s`` passes, whichever is first; a refusal (``401``/``403``) replaces it and is
kept for ``refusal_ttl_s``, so a refused token cannot make blobgate ask again and again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from blobgate.expiring import ExpiringCache

REFUSED_STATUSES = frozenset({401, 403})


class Confirmations:
    """The registry's verdicts on (token, repository) pairs, each kept for a bounded time."""

    def __init__(
        self, ttl_s: float, refusal_ttl_s: float, maxsize: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ttl_s = ttl_s
        self._refusal_ttl_s = refusal_ttl_s
        self._clock = clock
        self.cache: ExpiringCache[tuple[str, str], tuple[bool, float]] = ExpiringCache(
            maxsize, lambda verdict: verdict[1], clock
        )

    def verdict(self, authorization: str, name: str) -> bool | None:
        """``True``: accepted; ``False``: refused; ``None``: not known (ask the registry)."""
        entry = self.cache.get((authorization, name))
        return None if entry is None else entry[0]

    def record(
        self, authorization: str, name: str, status: int, token_expires_at: float
    ) -> bool | None:
        """Learn from the registry's ``status`` for a pull-kind request with this token on
        ``name``; returns the verdict it implies (``None`` when the status says nothing:
        a ``404``, a ``5xx``, a redirect)."""
        if 200 <= status < 300:
            return self.accept(authorization, name, token_expires_at)
        if status in REFUSED_STATUSES:
            until = self._clock() + self._refusal_ttl_s
            self.cache.put((authorization, name), (False, until))
            return False
        return None

    def accept(self, authorization: str, name: str, token_expires_at: float) -> bool:
        """Record that the registry accepted this token for ``name``."""
        until = min(token_expires_at, self._clock() + self._ttl_s)
        self.cache.put((authorization, name), (True, until))
        return True
