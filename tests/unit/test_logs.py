"""Log lines are JSON, written whole, and those written on the event loop's thread are
written together, a flush interval later."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from blobgate.ops.logs import ATOMIC_BYTES, MAX_PENDING, JSONFormatter, LineHandler, LineWriter

INTERVAL_S = 0.05


class Recording(io.BytesIO):
    """A stream that remembers each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return super().write(data)


class Broken(io.BytesIO):
    """A stream whose reader went away."""

    def write(self, data: bytes) -> int:  # type: ignore[override]
        raise BrokenPipeError


@pytest.fixture
def stream() -> Recording:
    return Recording()


@pytest.fixture
def writer(stream: Recording) -> Iterator[LineWriter]:
    writer = LineWriter(stream, flush_interval_s=INTERVAL_S)
    yield writer
    writer.bind(None)


@pytest.fixture
def logger(writer: LineWriter) -> Iterator[logging.Logger]:
    handler = LineHandler(writer)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("blobgate.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)


def lines(stream: Recording) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_the_lines_of_one_interval_are_one_write(
    writer: LineWriter, logger: logging.Logger, stream: Recording
) -> None:
    writer.bind(asyncio.get_running_loop())
    logger.info("line %d", 0)
    writer.write(b'{"line": 1}\n')
    await asyncio.sleep(0)
    logger.info("line %d", 2)
    assert stream.writes == []  # nothing written before the interval ends
    await asyncio.sleep(2 * INTERVAL_S)  # its timer was set before this sleep's: it fired
    assert len(stream.writes) == 1
    assert [entry.get("message", entry.get("line")) for entry in lines(stream)] == [
        "line 0", 1, "line 2"]


async def test_a_full_batch_is_written_at_once_and_unbinding_writes_the_rest(
    writer: LineWriter, stream: Recording
) -> None:
    writer.bind(asyncio.get_running_loop())
    for i in range(MAX_PENDING + 2):
        writer.write(b'{"i": %d}\n' % i)
    assert len(lines(stream)) == MAX_PENDING
    writer.bind(None)
    assert [entry["i"] for entry in lines(stream)] == list(range(MAX_PENDING + 2))
    writer.write(b'{"i": "after"}\n')  # not batching any more: written at once
    assert lines(stream)[-1]["i"] == "after"


async def test_other_threads_write_at_once(
    writer: LineWriter, logger: logging.Logger, stream: Recording
) -> None:
    writer.bind(asyncio.get_running_loop())
    thread = threading.Thread(target=logger.warning, args=("from a thread",))
    thread.start()
    thread.join()
    assert [entry["message"] for entry in lines(stream)] == ["from a thread"]


async def test_one_writer_writes_what_is_pending_at_once(
    writer: LineWriter, stream: Recording
) -> None:
    writer.bind(asyncio.get_running_loop())
    sent = [b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * 500) for i in range(20)]
    for line in sent:
        writer.write(line)
    await asyncio.sleep(2 * INTERVAL_S)
    assert stream.writes == [b"".join(sent)]


async def test_a_shared_stream_gets_no_write_longer_than_a_pipe_takes_whole(
    writer: LineWriter, stream: Recording
) -> None:
    writer.bind(asyncio.get_running_loop(), shared=True)
    sent = [b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * (i * 37 % 900)) for i in range(200)]
    sent.append(b'{"long": "%s"}\n' % (b"y" * (2 * ATOMIC_BYTES)))  # longer than a pipe takes
    for line in sent:
        writer.write(line)
    await asyncio.sleep(2 * INTERVAL_S)
    assert len(stream.writes) > 1
    assert all(chunk.endswith(b"\n") for chunk in stream.writes)
    assert all(len(chunk) <= ATOMIC_BYTES for chunk in stream.writes[:-1])
    assert stream.getvalue().splitlines(keepends=True) == sent


async def test_a_stream_that_fails_loses_lines_not_the_caller(
    logger: logging.Logger,
) -> None:
    writer = LineWriter(Broken())
    writer.bind(asyncio.get_running_loop())
    writer.write(b"{}\n")
    writer.flush()  # raises nothing
    writer.bind(None)


def test_messages_and_tracebacks_are_redacted(logger: logging.Logger, stream: Recording
                                               ) -> None:
    logger.info("Authorization: Bearer abc.def.ghi")
    try:
        raise ValueError("password=hunter2")
    except ValueError:
        logger.exception("failed")
    first, second = lines(stream)
    assert first["message"] == "Authorization: Bearer <redacted>"
    assert (first["level"], first["logger"]) == ("info", "blobgate.test-logs")
    assert "hunter2" not in str(second["error"])
    assert "password=<redacted>" in str(second["error"])
