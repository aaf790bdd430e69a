"""A PostgreSQL pool that is opened on first use and never makes a request wait on a
database that is down.

After a failed connection attempt, further attempts are refused at once (raising
``DatabaseUnavailable``) for ``retry_s`` seconds, so callers fall back immediately
instead of each paying a connect timeout.

A password kept in a file (``*.dsn_password_file``: a mounted Kubernetes Secret) is
read for every new connection, so a rotated Secret is used without a restart, and it
never becomes part of the DSN, the environment or a message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from blobgate.config import Config
from blobgate.errors import ConfigError

CONNECT_TIMEOUT_S = 3.0
ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class DatabaseUnavailable(Exception):
    """The database could not be reached recently; the message says why."""


def read_password(path: Path) -> str:
    """The password in ``path``, without the line break an editor or ``echo`` leaves."""
    return path.read_text().rstrip("\r\n")


def check_password_files(cfg: Config) -> None:
    """Read each configured password file once, so a missing or empty one fails
    ``check-config`` and start-up with its key named."""
    for key, name in (("membership.dsn_password_file", cfg.membership.dsn_password_file),
                      ("audit.dsn_password_file", cfg.audit.dsn_password_file)):
        if name is None:
            continue
        try:
            password = read_password(Path(name))
        except OSError as exc:
            raise ConfigError(key, f"cannot read {name}: {exc.strerror}") from None
        if not password:
            raise ConfigError(key, f"{name} is empty")


class LazyPool:
    """An asyncpg pool created on demand, with ``init_sql`` run once when it opens."""

    def __init__(
        self, dsn: str, max_size: int, init_sql: str | None = None, retry_s: float = 5.0,
        password_file: str | None = None,
    ) -> None:
        self._dsn = dsn
        self._password: Callable[[], str] | None = None
        if password_file is not None:
            path = Path(password_file)
            self._password = lambda: read_password(path)
        self._max_size = max_size
        self._init_sql = init_sql
        self._retry_s = retry_s
        self._pool: Any = None
        self._lock = asyncio.Lock()
        self._refuse_until = 0.0
        self.last_error = ""

    async def get(self) -> Any:
        """The open pool, opening it if needed; refused at once for a while after a failure."""
        if time.monotonic() < self._refuse_until:
            raise DatabaseUnavailable(self.last_error)
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                await self._open()
        return self._pool

    async def _open(self) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                pool = await asyncpg.create_pool(self._dsn, password=self._password,
                                                 min_size=1, max_size=self._max_size)
                if self._init_sql is not None:
                    async with pool.acquire() as conn:
                        await conn.execute(self._init_sql)
        except ERRORS as exc:
            self.failed(exc)
            raise DatabaseUnavailable(self.last_error) from exc
        self._pool = pool
        self.last_error = ""

    async def probe(self) -> str:
        """``""`` when a query succeeds now, else why not (used by readiness)."""
        try:
            pool = await self.get()
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await pool.fetchval("SELECT 1")
        except DatabaseUnavailable as exc:
            return str(exc)
        except ERRORS as exc:
            self.failed(exc)
            return self.last_error
        self.succeeded()
        return ""

    def failed(self, exc: BaseException) -> None:
        """Note a failure (of opening or of a query): refuse new attempts for a while."""
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._refuse_until = time.monotonic() + self._retry_s

    def succeeded(self) -> None:
        """Note a successful query."""
        self.last_error = ""

    async def close(self) -> None:
        """Close the pool if it was opened."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
