"""A PostgreSQL server for tests: the one named by BLOBGATE_TEST_PG_DSN, the local one on
127.0.0.1:5432, or a throwaway cluster started with initdb/pg_ctl where they exist.

Each test session gets its own database, dropped at the end.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from blobgate.devstack.procs import free_port

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _reachable(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextmanager
def _throwaway_cluster() -> Iterator[str | None]:
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries or (os.geteuid() == 0 and shutil.which("runuser") is None):
        yield None
        return
    bindir, port = Path(binaries[-1]), free_port()
    data = Path(tempfile.mkdtemp(prefix="blobgate-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    run = lambda argv: subprocess.run(_as_postgres(argv), check=True, capture_output=True)  # noqa: E731
    run([str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"])
    run([str(bindir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"),
         "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run([str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop"])
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def fresh_database() -> Iterator[str | None]:
    """A DSN for a fresh database, or ``None`` when no PostgreSQL can be had."""
    candidates = [os.environ.get("BLOBGATE_TEST_PG_DSN"), LOCAL]
    server = next((c for c in candidates if c and asyncio.run(_reachable(c))), None)
    with _throwaway_cluster() if server is None else _given(server) as admin:
        if admin is None:
            yield None
            return
        name = f"blobgate_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(_execute(admin, f"CREATE DATABASE {name}"))
        try:
            yield admin.rsplit("/", 1)[0] + "/" + name
        finally:
            asyncio.run(_execute(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@contextmanager
def _given(dsn: str) -> Iterator[str]:
    yield dsn


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
