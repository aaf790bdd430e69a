"""A minimal keep-alive HTTP client for sequential latency probes (redirects not followed)."""

from __future__ import annotations

import http.client
import time
from types import TracebackType
from urllib.parse import urlsplit


class Client:
    """One persistent connection to a loopback server."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)

    def get(self, path: str, token: str) -> tuple[int, dict[str, str], float]:
        """GET ``path`` with a Bearer token: status, headers, and seconds until the answer."""
        started = time.perf_counter()
        self._conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = self._conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        return response.status, dict(response.getheaders()), elapsed

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
