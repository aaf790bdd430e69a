"""Log lines are JSON, and those logged on the event loop's thread are written together."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from blobgate.logs import MAX_PENDING, BatchingHandler, JSONFormatter


class Recording(io.StringIO):
    """A stream that remembers each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, BatchingHandler, Recording]]:
    stream = Recording()
    handler = BatchingHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("blobgate.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler, stream
    logger.removeHandler(handler)


def lines(stream: Recording) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_one_loop_turn_is_one_write(
    logged: tuple[logging.Logger, BatchingHandler, Recording]
) -> None:
    logger, handler, stream = logged
    handler.bind(asyncio.get_running_loop())
    for i in range(3):
        logger.info("line %d", i)
    assert stream.writes == []  # nothing written until the turn ends
    await asyncio.sleep(0)
    assert len(stream.writes) == 1
    assert [entry["message"] for entry in lines(stream)] == ["line 0", "line 1", "line 2"]
    handler.bind(None)


async def test_a_full_batch_is_written_at_once_and_unbinding_writes_the_rest(
    logged: tuple[logging.Logger, BatchingHandler, Recording]
) -> None:
    logger, handler, stream = logged
    handler.bind(asyncio.get_running_loop())
    for i in range(MAX_PENDING + 2):
        logger.info("line %d", i)
    assert len(lines(stream)) == MAX_PENDING
    handler.bind(None)
    assert len(lines(stream)) == MAX_PENDING + 2
    logger.info("after")  # not batching any more: written at once
    assert lines(stream)[-1]["message"] == "after"


async def test_other_threads_write_at_once(
    logged: tuple[logging.Logger, BatchingHandler, Recording]
) -> None:
    logger, handler, stream = logged
    handler.bind(asyncio.get_running_loop())
    thread = threading.Thread(target=logger.warning, args=("from a thread",))
    thread.start()
    thread.join()
    assert [entry["message"] for entry in lines(stream)] == ["from a thread"]
    handler.bind(None)


def test_messages_are_redacted_but_fields_are_kept(
    logged: tuple[logging.Logger, BatchingHandler, Recording]
) -> None:
    logger, _, stream = logged
    logger.info("Authorization: Bearer abc.def.ghi")
    logger.info("access", extra={"fields": {"status": 307, "path": "/v2/a/blobs/x"}})
    first, second = lines(stream)
    assert "abc.def.ghi" not in str(first["message"])
    assert (second["status"], second["path"], second["level"]) == (307, "/v2/a/blobs/x", "info")
