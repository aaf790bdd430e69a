"""How blobgate writes its logs: JSON lines on stderr, redacted, batched per loop turn.

Every record becomes one JSON object per line; messages and tracebacks pass through
``redact`` (structured ``fields`` are built by blobgate from values that hold no secrets).
At ``log.level: info`` a busy gateway writes two lines per blob request (access and
audit), and a write per line cost more than the rest of the request; so records logged
on the event loop's thread are written together once per loop turn (or every
``MAX_PENDING`` lines), and records from anywhere else are written at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import TextIO

from blobgate.redact import redact

MAX_PENDING = 512
_JSON = json.JSONEncoder(default=str)


class JSONFormatter(logging.Formatter):
    """Formats records as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(fields, dict):
            entry.update(fields)  # built by blobgate from values that hold no secrets
        else:
            entry["message"] = redact(record.getMessage())
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = redact(self.formatException(record.exc_info))
        return _JSON.encode(entry)


class BatchingHandler(logging.StreamHandler[TextIO]):
    """A stream handler that writes the lines of one event-loop turn with one write."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Batch the records logged on ``loop``'s thread (``None``: stop batching)."""
        self.flush()
        self._loop, self._thread = loop, threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        if self._loop is None or threading.get_ident() != self._thread:
            self._write(line)
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(line)
        if len(self._pending) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        lines, self._pending = self._pending, []
        self._write("".join(lines))

    def _write(self, text: str) -> None:
        assert self.lock is not None  # made by logging.Handler.__init__
        with self.lock:
            if text:
                self.stream.write(text)
            self.stream.flush()


def batch_on(loop: asyncio.AbstractEventLoop | None) -> None:
    """Batch the lines the root logger's handlers write on ``loop``'s thread; ``None``
    writes what is pending and stops batching."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BatchingHandler):
            handler.bind(loop)


def configure(level: str) -> None:
    """Send all logs to stderr as JSON lines, without the per-record caller, thread and
    process lookups the JSON lines never show (the logging HOWTO's "Optimization")."""
    logging._srcfile = None  # the documented switch for caller lookups
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingHandler()
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
