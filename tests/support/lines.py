"""Capturing the lines blobgate writes (access, audit and other log lines)."""

from __future__ import annotations

import io
import json
from typing import Any

from blobgate.logs import LineWriter


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
