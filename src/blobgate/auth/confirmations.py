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
With ``shared``, verdicts are also kept in the replicas' Redis (under the same hash), so
a pull whose manifest request reached another replica costs nothing here; and a new
refusal is written there, then published (with the hash, never the token), so every
replica drops its acceptance of that token for that repository at once instead of
serving it until the acceptance expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from blobgate.caches.shared import VERDICTS, Malformed, Shared, expiry, token_key
from blobgate.expiring import ExpiringCache

REFUSED_STATUSES = frozenset({401, 403})
Verdict = tuple[bool, float]  # accepted?, until when


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
        self.cache: ExpiringCache[tuple[bytes, str], Verdict] = ExpiringCache(
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
        found = await self._shared.get(VERDICTS, f"{token_key(token)}:{name}", self._parse)
        if found is None:
            return None
        self.cache.put((token, name), found)
        return found[0]

    def _parse(self, value: str) -> Verdict | None:
        """A shared ``<0|1>|<until>``, kept no longer than this replica would keep it;
        ``None`` once over."""
        verdict, bar, until = value.partition("|")
        if not bar or verdict not in ("0", "1"):
            raise Malformed(f"not a verdict: {value[:40]!r}")
        accepted, now = verdict == "1", self._clock()
        ends = min(expiry(until), now + (self._ttl_s if accepted else self._refusal_ttl_s))
        return (accepted, ends) if ends > now else None

    def record(
        self, token: bytes, name: str, status: int, token_expires_at: float
    ) -> bool | None:
        """Learn from the registry's ``status`` for a pull-kind request with this token on
        ``name``; returns the verdict it implies (``None`` when the status says nothing:
        a ``404``, a ``5xx``, a redirect). A new refusal is announced to every replica."""
        if 200 <= status < 300:
            return self.accept(token, name, token_expires_at)
        if status in REFUSED_STATUSES:
            held = self.cache.peek((token, name))
            self._keep(token, name, (False, self._clock() + self._refusal_ttl_s),
                       announce=held is None or held[0])
            return False
        return None

    def accept(self, token: bytes, name: str, token_expires_at: float) -> bool:
        """Record that the registry accepted this token for ``name``."""
        self._keep(token, name, (True, min(token_expires_at, self._clock() + self._ttl_s)))
        return True

    def heard_refusal(self, token: bytes, name: str) -> None:
        """Another replica saw the registry refuse ``token`` for ``name``: hold that refusal
        here for ``refusal_ttl_s`` too, so no acceptance written back into Redis meanwhile
        is believed (a refusal held already stays as it is)."""
        held = self.cache.peek((token, name))
        if held is None or held[0]:
            self.cache.put((token, name), (False, self._clock() + self._refusal_ttl_s))

    def _keep(self, token: bytes, name: str, verdict: Verdict, announce: bool = False) -> None:
        self.cache.put((token, name), verdict)
        if self._shared is None:
            return
        key = token_key(token)
        message = {"op": "refuse", "token": key, "name": name} if announce else None
        self._shared.put(VERDICTS, f"{key}:{name}", f"{int(verdict[0])}|{verdict[1]}",
                         verdict[1] - self._clock(), then=message)
