"""Capturing the lines blobgate writes (access, audit and other log lines)."""

from __future__ import annotations

import io
import json
from typing import Any

from blobgate.ops.logs import LineWriter

# The keys of each kind of line, as the README's "Logs" section documents them.
ACCESS_KEYS = frozenset({"ts", "level", "logger", "ts_start", "method", "path", "route",
                         "outcome", "reason", "repository", "digest", "user", "status",
                         "bytes", "duration_ms", "client", "peer", "location"})
BLOB_AUDIT_KEYS = ACCESS_KEYS | {"at", "user_name"}  # a blob request's one line
AUDIT_KEYS = frozenset({"ts", "level", "logger", "at", "user_name", "repository", "digest",
                        "method", "outcome", "reason", "status", "client",
                        "peer"})  # a URL handed out


class Lines(LineWriter):
    """A ``LineWriter`` into memory: what a gateway wrote, as text or as parsed lines."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        super().__init__(self.buffer)

    def text(self) -> str:
        """Everything written so far (pending lines included)."""
        self.flush()
        return self.buffer.getvalue().decode()

    def entries(self, logger: str | None = None) -> list[dict[str, Any]]:
        """Each line parsed as JSON (``ValueError`` if one is not), of ``logger`` only if
        given."""
        parsed = [json.loads(line) for line in self.text().splitlines()]
        return [e for e in parsed if logger is None or e["logger"] == logger]
