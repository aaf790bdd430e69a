"""The audit trail of blob access: who read which blob of which repository, when, from where.

``client`` is the address blobgate decided the request came from (the one routing uses:
the first untrusted hop of ``X-Forwarded-For`` when the peer is one of
``routing.trusted_proxies``, else the peer), ``peer`` the TCP peer itself (an ingress pod
behind a proxy).

``LogAudit`` writes each record as a JSON line (logger ``blobgate.audit``); a blob
request's line also carries the request's access-line fields and is its only line.
``PostgresAudit`` queues records in a bounded queue and writes them in batches with
``COPY``; it never blocks or fails a pull: when the database is slow or down, records
wait in the queue and are written once it is back; records that do not fit are dropped
and counted (``blobgate_audit_records_total{result="dropped"}``), and on shutdown
whatever is queued is flushed (for at most the shutdown grace). One caller (a token's
subject; anonymous callers together) may hold at most ``caller_queue_size`` records of
the queue, so no caller, with URL-API batches or plain pulls, can crowd the others'
records out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Protocol

from aiohttp import web

from blobgate.config import AuditConfig
from blobgate.ops.db import ERRORS as DB_ERRORS
from blobgate.ops.db import DatabaseUnavailable, LazyPool
from blobgate.ops.logs import LineWriter, encode
from blobgate.ops.metrics import Stats

AUDIT_LOGGER = "blobgate.audit"
audit_log = logging.getLogger(AUDIT_LOGGER)  # its level says whether audit lines are on
log = audit_log  # the trail's own troubles are told under its name, as its lines are

WRITE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One blob access."""

    at: datetime
    user_name: str
    repository: str
    digest: str
    method: str
    outcome: str
    status: int
    client: str
    peer: str
    reason: str = ""  # why: ``decision``

    def row(self) -> tuple[datetime, str, str, str, str, str, int, str, str, str]:
        """The record as a table row, in ``COLUMNS`` order (no deep copy, unlike astuple)."""
        return (self.at, self.user_name, self.repository, self.digest, self.method,
                self.outcome, self.status, self.client, self.peer, self.reason)


COLUMNS = tuple(f.name for f in fields(AuditRecord))
_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    at timestamptz NOT NULL,
    user_name text NOT NULL,
    repository text NOT NULL,
    digest text NOT NULL,
    method text NOT NULL,
    outcome text NOT NULL,
    status integer NOT NULL,
    client text NOT NULL,
    peer text NOT NULL DEFAULT '',
    reason text NOT NULL DEFAULT ''
);
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS peer text NOT NULL DEFAULT '';
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS reason text NOT NULL DEFAULT ''
"""


class Audit(Protocol):
    """Where audit records go. ``submit`` never blocks."""

    @property
    def enabled(self) -> bool:
        """False when records would go nowhere (the request path then builds none)."""
        ...

    def submit(self, record: AuditRecord) -> None:
        """Record one access (or count it as dropped)."""
        ...


AUDIT = web.AppKey("audit", Audit)


class LogAudit:
    """Audit records as JSON lines, on at ``log.level`` info or debug."""

    def __init__(self, stats: Stats, lines: LineWriter) -> None:
        self._counts = stats.audit
        self._lines = lines
        self._utc = UTCText()

    @property
    def enabled(self) -> bool:
        return audit_log.isEnabledFor(logging.INFO)

    def submit(self, record: AuditRecord) -> None:
        entry: dict[str, object] = {"ts": round(time.time(), 3), "level": "info",
                                    "logger": AUDIT_LOGGER,
                                    **dict(zip(COLUMNS, record.row(), strict=True))}
        entry["at"] = record.at.isoformat()
        self._write(entry)

    def submit_request(self, access: dict[str, object], now: float) -> None:
        """Record a blob request from its access line (``ts`` ``now``): the line, with
        ``logger``, ``at`` and ``user_name`` of an audit record, is the request's only one."""
        access["logger"] = AUDIT_LOGGER
        access["at"] = self._utc(now)
        access["user_name"] = access["user"] or ""
        self._write(access)

    def _write(self, entry: dict[str, object]) -> None:
        self._lines.write(encode(entry))
        self._counts["written"] += 1


class UTCText:
    """Moments as ISO 8601 text in UTC, to the microsecond (``datetime.isoformat``'s
    form, the microseconds always written), the text of the current second kept:
    formatting a datetime costs ~2 µs a line."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, now: float) -> str:
        second = int(now)
        micro = round((now - second) * 1_000_000)  # as datetime rounds the fraction
        if micro == 1_000_000:
            second, micro = second + 1, 0
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._text}.{str(1_000_000 + micro)[1:]}+00:00"  # faster than :06d


class PostgresAudit:
    """Batches audit records into a PostgreSQL table through an asyncpg pool."""

    def __init__(self, cfg: AuditConfig, stats: Stats) -> None:
        self._cfg = cfg
        self._stats = stats
        self._queue: deque[AuditRecord] = deque()
        self._queued: Counter[str] = Counter()  # records in the queue, per user_name
        self._wake = asyncio.Event()
        self._pool = LazyPool(cfg.dsn or "", max_size=2, init_sql=_DDL.format(table=cfg.table),
                              password_file=cfg.dsn_password_file)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.enabled = True

    def submit(self, record: AuditRecord) -> None:
        caller = record.user_name
        if (len(self._queue) >= self._cfg.queue_size
                or self._queued[caller] >= self._cfg.caller_queue_size):
            self._stats.audit["dropped"] += 1
            return
        self._queue.append(record)
        self._queued[caller] += 1
        self._wake.set()

    def _take(self) -> AuditRecord:
        """The oldest queued record, out of the queue and its caller's share."""
        record = self._queue.popleft()
        left = self._queued[record.user_name] - 1
        if left:
            self._queued[record.user_name] = left
        else:
            del self._queued[record.user_name]
        return record

    def start(self) -> None:
        """Start the background writer."""
        self._task = asyncio.create_task(self._run())

    async def aclose(self, grace_s: float) -> None:
        """Flush what is queued (for at most ``grace_s``), then close the pool."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace_s)
            except TimeoutError:
                log.warning("audit flush timed out; %d records dropped", len(self._queue))
                self._stats.audit["dropped"] += len(self._queue)
        await self._pool.close()

    @property
    def pool(self) -> LazyPool:
        """The database connection pool."""
        return self._pool

    async def _run(self) -> None:
        while not (self._stopping and not self._queue):
            batch = await self._collect()
            if batch:
                await self._write(batch)

    async def _collect(self) -> list[AuditRecord]:
        """Wait for a record, then gather until the batch is full, its interval ends, or stop."""
        loop = asyncio.get_running_loop()
        batch: list[AuditRecord] = []
        deadline: float | None = None
        while len(batch) < self._cfg.batch_size:
            if self._queue:
                batch.append(self._take())
                deadline = deadline or loop.time() + self._cfg.flush_interval_s
                continue
            remaining = None if deadline is None else deadline - loop.time()
            if self._stopping or (remaining is not None and remaining <= 0):
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
        return batch

    async def _write(self, batch: list[AuditRecord]) -> None:
        was_failing = bool(self._pool.last_error)
        try:
            pool = await self._pool.get()
            async with asyncio.timeout(WRITE_TIMEOUT_S), pool.acquire() as conn:
                await conn.copy_records_to_table(
                    self._cfg.table, records=[r.row() for r in batch], columns=COLUMNS
                )
        except (*DB_ERRORS, DatabaseUnavailable) as exc:
            if not was_failing:
                log.warning("audit database unavailable, keeping up to %d records queued: %s",
                            self._cfg.queue_size, exc)
            if not isinstance(exc, DatabaseUnavailable):
                self._pool.failed(exc)
            self._requeue(batch)
            await asyncio.sleep(self._cfg.flush_interval_s)
            return
        self._stats.audit["written"] += len(batch)
        self._pool.succeeded()

    def _requeue(self, batch: list[AuditRecord]) -> None:
        """Put a batch the database did not take back at the head of the queue, to be
        written when it is back; what no longer fits in ``queue_size`` is dropped."""
        kept = batch[:max(0, self._cfg.queue_size - len(self._queue))]
        self._stats.audit["dropped"] += len(batch) - len(kept)
        for record in reversed(kept):
            self._queue.appendleft(record)
            self._queued[record.user_name] += 1


@asynccontextmanager
async def open_audit(cfg: AuditConfig, stats: Stats, grace_s: float, lines: LineWriter
                     ) -> AsyncIterator[Audit]:
    """The configured audit sink (``lines`` for the log), flushed and closed when the
    context ends."""
    if cfg.sink == "log":
        yield LogAudit(stats, lines)
        return
    sink = PostgresAudit(cfg, stats)
    sink.start()
    try:
        yield sink
    finally:
        with contextlib.suppress(Exception):
            await sink.aclose(grace_s)
