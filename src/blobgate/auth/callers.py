"""Who calls blobgate's URL APIs, and what the registry lets them have.

Registry clients present a Bearer token from the token service. Scripts that call
Harbor's API present Basic credentials (users, ``robot$<project>+<name>`` accounts, OIDC
CLI secrets): blobgate exchanges them at the token service for a pull token on the
repository exactly as docker does (``GET <realm>?service=<service>&scope=repository:
<name>:pull`` with the credentials), then treats that token like any other. An exchange
is kept for ``credentials_ttl_s`` (short: a rotated or revoked secret must stop working
about as soon as it does at the registry) and never past the token's ``exp``, keyed by a
SHA-256 of the credentials and the scope (never the credentials themselves); refusals
for ``refusal_ttl_s``, so the same wrong credentials cannot make blobgate ask the token
service again and again. Nothing here logs a credential.

Without a repository only a system administrator may ask: in front of Harbor that is
its ``sysadmin_flag`` (``GET /api/v2.0/users/current`` with the caller's credentials);
a registry without that API has no administrators (``repository is required``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from aiohttp import ClientResponse, web
from yarl import URL

from blobgate.auth.challenge import Challenge
from blobgate.auth.pulls import Pull
from blobgate.auth.tokens import Grant, TokenVerifier, bearer_token
from blobgate.errors import (
    AccessDenied,
    InvalidParameter,
    Unauthorized,
    UpstreamUnavailable,
)
from blobgate.expiring import ExpiringCache
from blobgate.jsontext import parse
from blobgate.registry.upstream import Upstream, translate_errors

CURRENT_USER = "/api/v2.0/users/current"


def _basic(values: list[str]) -> str | None:
    """The request's one ``Authorization`` value when it is Basic credentials."""
    if len(values) == 1 and values[0][:6].lower() == "basic ":
        return values[0]
    return None


async def _json(response: ClientResponse) -> Any:
    """The response's JSON body; ``UpstreamUnavailable`` when it is cut off or not JSON."""
    try:
        async with translate_errors():
            return await response.json(content_type=None, loads=parse)
    except ValueError:
        raise UpstreamUnavailable("the answer is not JSON", {"path": response.url.path}) from None


def _exchange_weight(_key: bytes, entry: tuple[str | None, float]) -> int:
    """An exchange's bytes: its token and under 512 bytes besides (measured: 1.3 KB for a
    1 KB token, 16.7 KB for a 16 KiB one)."""
    return len(entry[0] or "") + 512


class Callers:
    """Turns a URL-API request's credentials into a pull grant, or an administrator."""

    def __init__(
        self, verifier: TokenVerifier, upstream: Upstream, challenge: Challenge, service: str,
        credentials_ttl_s: float, refusal_ttl_s: float, maxsize: int, max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._verifier = verifier
        self._upstream = upstream
        self._challenge = challenge
        self._service = service
        self._credentials_ttl_s = credentials_ttl_s
        self._refusal_ttl_s = refusal_ttl_s
        self._clock = clock
        self.exchanges: ExpiringCache[bytes, tuple[str | None, float]] = ExpiringCache(
            maxsize, lambda entry: entry[1], clock, weigh=_exchange_weight, max_weight=max_bytes,
        )

    async def pull(self, request: web.BaseRequest, name: str) -> Pull:
        """The caller's pull grant on ``name``; ``Unauthorized`` (401, with a challenge)
        without valid credentials, ``AccessDenied`` (403) for Basic credentials with no
        pull on ``name``."""
        values = request.headers.getall("Authorization", [])
        scope = f"repository:{name}:pull"
        basic = _basic(values)
        if basic is not None:
            authorization = await self._exchange(basic, scope)
            grant = self._verifier.grant([authorization])
            if grant is None or not grant.can_pull(name):
                raise AccessDenied("these credentials may not pull from the repository",
                                   {"repository": name})
            return Pull(authorization, grant, name, "blobs")
        grant = self._verifier.grant(values)
        if grant is None or not grant.can_pull(name):
            error = "insufficient_scope" if grant is not None else (
                "invalid_token" if bearer_token(values) is not None else None)
            raise Unauthorized("authentication required",
                               await self._challenge.header(scope, error))
        return Pull(values[0], grant, name, "blobs")

    async def challenge(self, scope: str) -> str:
        """The challenge for a token that is no good (any more) for ``scope``."""
        return await self._challenge.header(scope, "invalid_token")

    async def administrator(self, request: web.BaseRequest) -> str:
        """The name of the calling system administrator, asked of Harbor's API."""
        values = request.headers.getall("Authorization", [])
        if len(values) != 1:
            raise Unauthorized("authentication required", await self._challenge.header(
                "registry:catalog:*"))
        async with await self._upstream.check(
                "GET", CURRENT_USER, headers={"Authorization": values[0]}) as response:
            if response.status == 404:
                raise InvalidParameter("repository is required")
            if response.status in (401, 403):
                raise Unauthorized("authentication required", await self._challenge.header(
                    "registry:catalog:*", "invalid_token"))
            if response.status != 200:
                raise UpstreamUnavailable(f"{CURRENT_USER} answered {response.status}")
            user = await _json(response)
        if not isinstance(user, dict) or user.get("sysadmin_flag") is not True:
            raise AccessDenied("without a repository only a system administrator may ask")
        return str(user.get("username", ""))

    async def _exchange(self, basic: str, scope: str) -> str:
        """``Bearer <token>`` for Basic credentials, from the token service (or cache)."""
        key = hashlib.sha256(f"{scope}\n{basic}".encode()).digest()
        cached = self.exchanges.get(key)
        if cached is None:
            token = await self._ask_token_service(basic, scope)
            grant = None if token is None else self._verifier.verify(token)
            cached = self._remember(key, token, grant)
        if cached[0] is None:
            raise Unauthorized("authentication required",
                               await self._challenge.header(scope, "invalid_token"))
        return f"Bearer {cached[0]}"

    def _remember(self, key: bytes, token: str | None, grant: Grant | None
                  ) -> tuple[str | None, float]:
        now = self._clock()
        entry = ((token, min(grant.expires_at, now + self._credentials_ttl_s))
                 if token is not None and grant is not None
                 else (None, now + self._refusal_ttl_s))
        self.exchanges.put(key, entry)
        return entry

    async def _ask_token_service(self, basic: str, scope: str) -> str | None:
        """The token service's token for these credentials, or ``None`` if it refused."""
        realm = await self._challenge.realm()
        if realm is None:
            raise UpstreamUnavailable("no token service is known (set auth.realm)")
        url = URL(realm).update_query(service=self._service, scope=scope)
        async with await self._upstream.check("GET", url,
                                              headers={"Authorization": basic}) as response:
            if response.status in (401, 403):
                return None
            if response.status != 200:
                raise UpstreamUnavailable(f"the token service answered {response.status}")
            body = await _json(response)
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        return token if isinstance(token, str) else None
