"""Graceful shutdown of a real ``blobgate serve`` process on SIGTERM.

With a slow pass-through in flight and audit records still queued (flush interval of an
hour, batch far larger than the run): the listener closes at once (new connections are
refused), the in-flight request completes, the queued audit rows reach PostgreSQL, and
the process exits 0.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from blobgate.devstack.s3 import S3Server
from hardening.served import ServedGateway

from support.standin import StandIn
from support.tokens import Signer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SLOW_S = 1.5


class SlowRegistry:
    """The stand-in plus ``/delay``, which answers ``SLOW_S`` after it was asked."""

    def __init__(self) -> None:
        self.state = StandIn()
        self.arrived = asyncio.Event()

    def app(self) -> web.Application:
        @web.middleware
        async def delay(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path == "/delay":
                self.arrived.set()
                await asyncio.sleep(SLOW_S)
                return web.Response(text="late but complete")
            return await handler(request)

        app = self.state.app()
        app.middlewares.append(delay)
        return app


@pytest.fixture
async def registry() -> AsyncIterator[tuple[SlowRegistry, str]]:
    slow = SlowRegistry()
    server = TestServer(slow.app())
    await server.start_server()
    yield slow, str(server.make_url("")).rstrip("/")
    await server.close()


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def audit_rows(dsn: str, table: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT to_regclass($1)", table) is None:
            return []
        return list(await conn.fetch(f"SELECT * FROM {table} ORDER BY at"))  # noqa: S608
    finally:
        await conn.close()


@pytest.mark.timeout(120)
async def test_sigterm_drains_in_flight_refuses_new_and_flushes_audit(
    registry: tuple[SlowRegistry, str], s3_server: S3Server, put_blob: Callable[..., str],
    bundle: Path, signer: Signer, pg_dsn: str, tmp_path: Path,
) -> None:
    slow, upstream_url = registry
    data = os.urandom(2048)
    digest = put_blob(data)
    slow.state.blobs[("library/a", digest)] = data
    table = f"audit_{uuid.uuid4().hex[:8]}"
    served = await asyncio.to_thread(
        ServedGateway, tmp_path / "gw", upstream_url, bundle, s3_server.endpoint_url,
        server={"shutdown_grace_s": 10},
        audit={"sink": "postgres", "dsn": pg_dsn, "table": table, "flush_interval_s": 3600,
               "batch_size": 100_000},
    )
    try:
        blob = f"{served.url}/v2/library/a/blobs/{digest}"
        token = {"Authorization": f"Bearer {signer.token('library/a', sub='erin')}"}
        statuses = []
        async with aiohttp.ClientSession() as session:
            for method, headers in [("GET", token)] * 4 + [("HEAD", token), ("GET", {})]:
                async with session.request(method, blob, headers=headers,
                                           allow_redirects=False) as response:
                    statuses.append(response.status)
        assert statuses == [307, 307, 307, 307, 200, 401]
        assert await audit_rows(pg_dsn, table) == []  # queued, not yet written

        async with aiohttp.ClientSession() as session:
            in_flight = asyncio.create_task(session.get(f"{served.url}/delay"))
            await asyncio.wait_for(slow.arrived.wait(), 10)
            served.terminate()
            # The listener goes away while the slow request is still being answered.
            for _ in range(100):
                if await refused(served.port):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("new connections still accepted after SIGTERM")
            assert not in_flight.done()
            response = await asyncio.wait_for(in_flight, 15)
            assert response.status == 200
            assert await response.text() == "late but complete"
        code = await asyncio.to_thread(served.wait, 30)
        assert code == 0, served.log_text()[-3000:]
        rows = await audit_rows(pg_dsn, table)
        assert [(r["method"], r["status"]) for r in rows] == [
            ("GET", 307)] * 4 + [("HEAD", 200), ("GET", 401)]
        assert {r["user_name"] for r in rows[:5]} == {"erin"}
        assert {r["digest"] for r in rows} == {digest}
        assert '"stopped"' in served.log_text()
    finally:
        await asyncio.to_thread(served.process.stop)


def test_exit_code_zero_on_sigterm_when_idle(
    s3_server: S3Server, bundle: Path, tmp_path: Path
) -> None:
    """SIGTERM with nothing in flight: a prompt, clean exit (the common rolling-update case)."""
    with ServedGateway(tmp_path / "gw", "http://127.0.0.1:9", bundle,
                       s3_server.endpoint_url) as served:
        served.terminate()
        assert served.wait(15) == 0
