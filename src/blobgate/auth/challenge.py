"""The ``WWW-Authenticate`` challenge for blobgate's own URL API.

Clients of the API get their token from the same token service as registry clients. Its
address (the realm) is configured as ``auth.realm``, or learnt once from the registry's
own challenge on ``/v2/``, so a standard setup needs no extra setting.
"""

from __future__ import annotations

import re

from blobgate.errors import RegistryError
from blobgate.registry.upstream import Upstream

_REALM = re.compile(r'realm="([^"]+)"')


class Challenge:
    """Builds ``Bearer realm=...,service=...,scope=...`` challenges."""

    def __init__(self, realm: str | None, service: str, upstream: Upstream) -> None:
        self._realm = realm
        self._service = service
        self._upstream = upstream

    async def header(self, scope: str, error: str | None = None) -> str:
        """The challenge for ``scope`` (e.g. ``repository:a/b:pull``)."""
        realm = await self.realm()
        parts = [f'realm="{realm}"'] if realm else []
        parts += [f'service="{self._service}"', f'scope="{scope}"']
        if error is not None:
            parts.append(f'error="{error}"')
        return "Bearer " + ",".join(parts)

    async def realm(self) -> str | None:
        """The token service's URL: configured, or learnt from the registry (once)."""
        return self._realm or await self._learn()

    async def _learn(self) -> str | None:
        try:
            async with await self._upstream.check("GET", "/v2/") as response:
                match = _REALM.search(response.headers.get("WWW-Authenticate", ""))
        except RegistryError:
            return None
        if match is not None:
            self._realm = match[1]
        return self._realm
