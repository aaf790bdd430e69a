"""Reading a span of a blob straight from a backend's byte source, as ``stream.serve`` does."""

from __future__ import annotations

from blobgate.backends.contract import BlobSource, Span
from blobgate.reference import BlobRef, Digest

SPANS = [(0, None), (0, 99), (300_000, 1_400_000), (-10, None)]
"""(first, last) pairs to read from a blob of a few MiB; negative first: from the end,
``None`` last: to the end."""


async def read_span(source: BlobSource, digest: Digest, first: int, last: int | None,
                    size: int, chunk_bytes: int) -> tuple[bytes, slice]:
    """The bytes ``source`` yields for the span, each chunk checked to be at most
    ``chunk_bytes``; and the slice of the blob they must equal."""
    first = first % size
    last = size - 1 if last is None else last
    chunks = []
    async with source.open(BlobRef("library/a", digest), "", Span(first, last, size)) as body:
        async for chunk in body:
            assert len(chunk) <= chunk_bytes  # memory stays bounded by the chunk size
            chunks.append(chunk)
    return b"".join(chunks), slice(first, last + 1)
