"""How blobgate writes its logs: JSON lines on stderr, redacted, batched per loop turn.

Two kinds of line share one ``LineWriter``, so their order is kept:

* records of Python's ``logging`` (blobgate's own and its libraries'), formatted by
  ``JSONFormatter``, messages and tracebacks passed through ``redact``;
* the per-request access and audit lines, which ``accesslog`` and ``audit`` encode
  themselves from fields blobgate built. Through ``logging`` (a ``LogRecord``, a
  handler, the json module, ``redact`` on the whole line) each of those cost ~30 µs, as
  much as the rest of a warm request; built and encoded directly, a blob request's one
  line costs ~8 µs on the 2-core bench machine (see BENCHMARKS.md).

Lines written on the event loop's thread are kept and written together every
``FLUSH_INTERVAL_S`` (or once ``MAX_PENDING`` are waiting, and on shutdown), as nginx's
``access_log ... buffer= flush=`` does: a write per loop turn was a system call per one or
two requests. Lines from any other thread are written at once. When several workers
share the stream, a write never carries more than ``PIPE_BUF`` bytes unless one line is
longer, so their lines never interleave inside a line on a pipe (one worker writes all
that is pending at once: 4 KiB writes cost ~0.5 µs a line more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import sys
import threading
from collections.abc import Iterator
from typing import BinaryIO

import orjson

from blobgate.ops.redact import redact

MAX_PENDING = 512
FLUSH_INTERVAL_S = 0.1
ATOMIC_BYTES = select.PIPE_BUF


def encode(entry: dict[str, object]) -> bytes:
    """One JSON line, newline included; values JSON has no type for become strings."""
    return orjson.dumps(entry, default=str, option=orjson.OPT_APPEND_NEWLINE)


class LineWriter:
    """Writes whole lines to one binary stream (the process's stderr unless given one)."""

    def __init__(self, stream: BinaryIO | None = None,
                 flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._stream = stream
        self._interval_s = flush_interval_s
        self._pending: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._lock = threading.Lock()
        self._write_bytes = sys.maxsize

    def bind(self, loop: asyncio.AbstractEventLoop | None, shared: bool = False) -> None:
        """Keep the lines written on ``loop``'s thread for a while (``None``: write
        pending lines and stop keeping them); ``shared``: other processes write to the
        same stream."""
        self.flush()
        self._loop, self._thread = loop, threading.get_ident()
        self._write_bytes = ATOMIC_BYTES if shared else sys.maxsize

    def write(self, line: bytes) -> None:
        """Write one line, given with its newline (``encode`` makes such lines)."""
        if self._loop is None or threading.get_ident() != self._thread:
            self._write([line])
            return
        pending = self._pending
        if not pending:
            self._loop.call_later(self._interval_s, self.flush)
        pending.append(line)
        if len(pending) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        """Write the pending lines now."""
        lines, self._pending = self._pending, []
        if lines:
            self._write(lines)

    def _write(self, lines: list[bytes]) -> None:
        stream = self._stream if self._stream is not None else sys.stderr.buffer
        with self._lock, contextlib.suppress(OSError, ValueError):  # a lost line, never a
            for chunk in _chunks(lines, self._write_bytes):         # lost request
                stream.write(chunk)
                stream.flush()  # one system call per chunk


def _chunks(lines: list[bytes], most: int) -> Iterator[bytes]:
    """The lines joined into pieces of at most ``most`` bytes (a longer line is a piece
    of its own)."""
    if most == sys.maxsize:
        yield b"".join(lines)
        return
    start, size = 0, 0
    for end, line in enumerate(lines):
        if size and size + len(line) > most:
            yield b"".join(lines[start:end])
            start, size = end, 0
        size += len(line)
    yield b"".join(lines[start:])


STDERR = LineWriter()


class JSONFormatter(logging.Formatter):
    """Formats ``logging`` records as one JSON object per line, message and traceback
    redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class LineHandler(logging.Handler):
    """A ``logging`` handler that hands each formatted record to a ``LineWriter``."""

    def __init__(self, lines: LineWriter) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).encode() + b"\n"
        except Exception:
            self.handleError(record)
            return
        self.lines.write(line)


def configure(level: str, lines: LineWriter = STDERR) -> None:
    """Send all logs to ``lines`` (stderr) as JSON lines, without the per-record caller,
    thread and process lookups the lines never show (the logging HOWTO's "Optimization")."""
    logging._srcfile = None  # the documented switch for caller lookups
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LineHandler(lines)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
