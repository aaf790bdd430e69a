"""Raw HTTP/1.1 on a socket, for requests aiohttp's client would refuse or rewrite.

aiohttp's client normalises ``..`` and ``//`` in paths, merges duplicate headers in some
cases and refuses oversized ones; these helpers put exactly the given bytes on the wire
and parse exactly what comes back (``http.client`` does the parsing, chunked included).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Answer:
    """A response as received: status, headers (duplicates kept) and body."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of ``name``, or ``None`` when absent."""
        return self.headers.get(name)


class _Received:
    """Just enough of a socket for ``http.client.HTTPResponse`` to parse bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self._data)


def parse(data: bytes, method: str = "GET") -> Answer:
    """Parse one HTTP/1.1 response from ``data``."""
    response = http.client.HTTPResponse(_Received(data), method=method)  # type: ignore[arg-type]
    response.begin()
    body = response.read()
    return Answer(response.status, response.headers, body)


def request_bytes(
    method: str, target: str, headers: list[tuple[str, str]] | None = None, port: int = 0
) -> bytes:
    """A request head with ``Host`` and ``Connection: close`` plus ``headers`` in order."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send(port: int, raw: bytes, timeout_s: float = 15.0) -> bytes:
    """Send ``raw`` to 127.0.0.1:``port`` and return everything read until the peer closes.

    A reset after the response arrived is not an error: servers that refuse oversized
    requests close with unread data in their buffer, which Linux turns into a RST.
    """
    reader, writer = await asyncio.open_connection(HOST, port)
    received = bytearray()
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(raw)
            await writer.drain()
        async with asyncio.timeout(timeout_s):
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    received += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return bytes(received)


async def exchange(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    timeout_s: float = 15.0,
    body: bytes = b"",
) -> Answer:
    """One request with exactly this target, these headers and this body; the answer."""
    data = await send(port, request_bytes(method, target, headers, port) + body, timeout_s)
    return parse(data, method)


def bearer(token: str) -> list[tuple[str, str]]:
    """An ``Authorization: Bearer`` header list."""
    return [("Authorization", f"Bearer {token}")]
