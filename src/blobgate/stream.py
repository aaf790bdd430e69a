"""Serving blob bytes through blobgate when a redirect cannot be used.

Ranges are answered from the size blobgate knows, never from what the origin says
(distribution's 416 is malformed): one range gives 206 with ``Content-Range``, an
unsatisfiable one 416, several ranges the whole blob. Bytes move one bounded chunk at a
time with backpressure from the client; nothing is decompressed or re-encoded. If the
origin fails after the first byte the connection is cut, so a client never mistakes a
short body for a whole blob; if it fails before, the caller can still fall back.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from blobgate.backends.contract import BlobSource, Span
from blobgate.errors import RegistryError, StorageError
from blobgate.ops.metrics import Stats
from blobgate.reference import BlobRef
from blobgate.registry.proxy import cut_short

log = logging.getLogger(__name__)

_SINGLE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")  # ASCII digits only
API_VERSION = {"Docker-Distribution-Api-Version": "registry/2.0"}
# A position of more digits than this is past the end of any blob (10**18 bytes is an
# exabyte), and ``int()`` refuses texts of more than 4300 digits.
_MAX_DIGITS = 18
_BEYOND_ANY_BLOB = 10**_MAX_DIGITS


class RangeNotSatisfiable(Exception):
    """The requested range lies outside the blob."""


def parse_range(header: str | None, size: int) -> Span:
    """The span a ``Range`` header asks for; the whole blob when absent, invalid or multiple."""
    whole = Span(0, size - 1, size)
    match = _SINGLE_RANGE.fullmatch((header or "").strip())
    if match is None or match[1] == match[2] == "":
        return whole
    if match[1] == "":  # suffix: the last N bytes
        suffix = _position(match[2])
        if suffix == 0:
            raise RangeNotSatisfiable
        return Span(max(size - suffix, 0), size - 1, size)
    first = _position(match[1])
    last = min(_position(match[2]), size - 1) if match[2] else size - 1
    if first >= size or first > last:
        if match[2] and _position(match[2]) < first:
            return whole  # syntactically invalid (last < first): ignore the header
        raise RangeNotSatisfiable
    return Span(first, last, size)


def _position(digits: str) -> int:
    """A byte position from a ``Range`` header; any number too long to be a position in a
    blob reads as one past every blob's end (so a huge first byte is unsatisfiable and a
    huge last byte or suffix means "to the end")."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else _BEYOND_ANY_BLOB


def _headers(ref: BlobRef, span: Span) -> dict[str, str]:
    headers = {
        "Docker-Content-Digest": str(ref.digest),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        **API_VERSION,
    }
    if not span.whole:
        headers["Content-Range"] = f"bytes {span.first}-{span.last}/{span.size}"
    return headers


def not_satisfiable(ref: BlobRef, size: int) -> web.Response:
    """A well-formed 416 for a range outside the blob."""
    return web.Response(
        status=416,
        headers={"Content-Range": f"bytes */{size}", "Docker-Content-Digest": str(ref.digest),
                 **API_VERSION},
    )


async def serve(
    request: web.BaseRequest,
    ref: BlobRef,
    span: Span,
    source: BlobSource,
    authorization: str,
    stats: Stats,
) -> web.StreamResponse:
    """Stream ``span`` of the blob to the client.

    Raises ``StorageError``/``RegistryError`` only before the response has started.
    """
    async with source.open(ref, authorization, span) as chunks:
        response = web.StreamResponse(status=200 if span.whole else 206,
                                      headers=_headers(ref, span))
        response.content_length = span.length
        await response.prepare(request)
        sent = 0
        try:
            async for chunk in chunks:
                sent += len(chunk)
                stats.streamed_bytes += len(chunk)
                await response.write(chunk)
        except (StorageError, RegistryError) as exc:
            return cut_short(request, response, f"origin failed after {sent} bytes: {exc}")
        if sent != span.length:
            return cut_short(request, response, f"origin ended after {sent} of {span.length}")
        await response.write_eof()
        return response
