"""Database passwords kept in a file: read for every new connection, sent only to the
server, never part of the DSN or of an error message.

A stand-in PostgreSQL server asks for a cleartext password and records what arrives.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from blobgate.ops.db import DatabaseUnavailable, LazyPool, read_password


async def _message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    kind = await reader.readexactly(1)
    (length,) = struct.unpack("!i", await reader.readexactly(4))
    return kind, await reader.readexactly(length - 4)


def _error(text: str) -> bytes:
    fields = b"SFATAL\0C28P01\0M" + text.encode() + b"\0\0"
    return b"E" + struct.pack("!i", len(fields) + 4) + fields


class PasswordServer:
    """Answers every connection with AuthenticationCleartextPassword, then refuses it."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        await reader.readexactly(length - 4)  # the startup message
        writer.write(b"R" + struct.pack("!ii", 8, 3))
        kind, body = await _message(reader)
        assert kind == b"p"
        self.received.append(body.rstrip(b"\0").decode())
        writer.write(_error("password authentication failed for user \"blobgate\""))
        await writer.drain()
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[PasswordServer, int]]:
    state = PasswordServer()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    yield state, listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()


async def test_the_password_comes_from_the_file_at_each_connection(
    server: tuple[PasswordServer, int], tmp_path: Path
) -> None:
    state, port = server
    password_file = tmp_path / "password"
    password_file.write_text("first-Zq3vT9\n")
    pool = LazyPool(f"postgresql://blobgate@127.0.0.1:{port}/audit?sslmode=disable",
                    max_size=1, retry_s=0, password_file=str(password_file))
    with pytest.raises(DatabaseUnavailable) as refused:
        await pool.get()
    assert state.received == ["first-Zq3vT9"]
    assert "password authentication failed" in str(refused.value)
    assert "first-Zq3vT9" not in str(refused.value) + pool.last_error

    password_file.write_text("rotated-Xk2p9")  # the Secret was rotated: no restart needed
    with pytest.raises(DatabaseUnavailable):
        await pool.get()
    assert state.received == ["first-Zq3vT9", "rotated-Xk2p9"]


async def test_without_a_file_the_dsn_password_is_used(
    server: tuple[PasswordServer, int]
) -> None:
    state, port = server
    pool = LazyPool(f"postgresql://blobgate:in-dsn@127.0.0.1:{port}/audit?sslmode=disable",
                    max_size=1, retry_s=0)
    with pytest.raises(DatabaseUnavailable):
        await pool.get()
    assert state.received == ["in-dsn"]


async def test_a_missing_file_is_an_unavailable_database(tmp_path: Path) -> None:
    pool = LazyPool("postgresql://blobgate@127.0.0.1:9/audit", max_size=1,
                    password_file=str(tmp_path / "gone"))
    with pytest.raises(DatabaseUnavailable, match="FileNotFoundError"):
        await pool.get()


def test_only_the_trailing_line_break_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(" p@ss word \r\n")
    assert read_password(path) == " p@ss word "
