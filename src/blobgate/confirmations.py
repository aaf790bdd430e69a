"""Which tokens the registry itself has accepted, for which repositories.

A token that verifies is not yet a token the registry would honour: Harbor refuses
tokens without ``iat`` or issued before the project was (re)created, and registries and
auth proxies refuse revoked sessions or disabled accounts for reasons blobgate cannot
see. So blobgate serves a token only for a repository the registry has accepted that
very token for. It learns that from the registry's own answers to that token: the
manifest ``GET``/``HEAD`` every pull starts with (passed through, so free), or the one
membership ``HEAD`` blobgate sends with the token when it has nothing else to go on.

An acceptance is kept per (token, repository) until the token expires or ``ttl_s``
passes, whichever is first; the token is named by its SHA-256 (``Grant.key``: 32 bytes
however long the token is). A refusal (``401``/``403``) replaces it and is kept for
``refusal_ttl_s``, so a refused token cannot make blobgate ask again and again.
With ``shared``, verdicts are also kept in the replicas' Redis (keyed by a hash of the
token), so a pull whose manifest request reached another replica costs nothing here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from blobgate.expiring import ExpiringCache
from blobgate.shared import VERDICTS, Shared, token_key

REFUSED_STATUSES = frozenset({401, 403})


class Confirmations:
    """The registry's verdicts on (token, repository) pairs, each kept for a bounded time."""

    def __init__(
        self, ttl_s: float, refusal_ttl_s: float, maxsize: int,
        clock: Callable[[], float] = time.time, shared: Shared | None = None,
    ) -> None:
        self._ttl_s = ttl_s
        self._refusal_ttl_s = refusal_ttl_s
        self._clock = clock
        self._shared = shared
        self.cache: ExpiringCache[tuple[bytes, str], tuple[bool, float]] = ExpiringCache(
            maxsize, lambda verdict: verdict[1], clock
        )

    def verdict(self, token: bytes, name: str) -> bool | None:
        """``True``: accepted; ``False``: refused; ``None``: not known (ask the registry)."""
        entry = self.cache.get((token, name))
        return None if entry is None else entry[0]

    async def recall(self, token: bytes, name: str) -> bool | None:
        """The verdict another replica learnt (kept here too), or ``None``."""
        if self._shared is None:
            return None
        value = await self._shared.get(VERDICTS, f"{token_key(token)}:{name}")
        verdict, _, until = (value or "").partition("|")
        if verdict not in ("0", "1") or float(until or 0) <= self._clock():
            return None
        self.cache.put((token, name), (verdict == "1", float(until)))
        return verdict == "1"

    def record(
        self, token: bytes, name: str, status: int, token_expires_at: float
    ) -> bool | None:
        """Learn from the registry's ``status`` for a pull-kind request with this token on
        ``name``; returns the verdict it implies (``None`` when the status says nothing:
        a ``404``, a ``5xx``, a redirect)."""
        if 200 <= status < 300:
            return self.accept(token, name, token_expires_at)
        if status in REFUSED_STATUSES:
            self._keep(token, name, False, self._clock() + self._refusal_ttl_s)
            return False
        return None

    def accept(self, token: bytes, name: str, token_expires_at: float) -> bool:
        """Record that the registry accepted this token for ``name``."""
        self._keep(token, name, True, min(token_expires_at, self._clock() + self._ttl_s))
        return True

    def _keep(self, token: bytes, name: str, verdict: bool, until: float) -> None:
        self.cache.put((token, name), (verdict, until))
        if self._shared is not None:
            self._shared.put(VERDICTS, f"{token_key(token)}:{name}",
                             f"{int(verdict)}|{until}", until - self._clock())
