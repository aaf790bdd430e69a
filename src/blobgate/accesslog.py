"""What happened to each request: metrics, one access-log line and an audit record.

Handlers describe what they did in a ``RequestInfo`` stored on the request; aiohttp's
access-log hook turns it into metrics, a log line and an audit record once the response
is done. Paths are logged without their query (upload-session state lives there).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from blobgate.audit import AUDIT, AuditRecord
from blobgate.metrics import STATS, Stats
from blobgate.redact import redact


@dataclass(slots=True)
class RequestInfo:
    """What blobgate decided for one request."""

    route: str = "passthrough"
    outcome: str = "passthrough"
    repository: str | None = None
    digest: str | None = None
    user: str | None = None


INFO_KEY = web.RequestKey("blobgate.info", RequestInfo)


def info_of(request: web.BaseRequest) -> RequestInfo:
    """The request's ``RequestInfo``, created on first use."""
    info = request.get(INFO_KEY)
    if info is None:
        info = RequestInfo()
        request[INFO_KEY] = info
    return info


class AccessLogger(AbstractAccessLogger):
    """aiohttp's per-request hook: records metrics, and writes the access line if enabled.

    Use ``AccessLogger.bound(app)``: requests carry no application (they are served by
    aiohttp's low-level server), and aiohttp calls the hook also for requests it refused
    before any handler ran, which must be counted too.
    aiohttp makes one hook per connection, so per-connection facts are settled here once.
    """

    app: ClassVar[web.Application | None] = None
    stats: ClassVar[Stats | None] = None

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._lines = logger.isEnabledFor(logging.INFO)
        self._audit = None if self.app is None else self.app.get(AUDIT)  # set at start-up

    @classmethod
    def bound(cls, app: web.Application) -> type[AccessLogger]:
        """A hook class that records into ``app``'s metrics and audit trail."""
        return type("BoundAccessLogger", (cls,), {"app": app, "stats": app[STATS]})

    @property
    def enabled(self) -> bool:
        return True  # metrics are recorded even when the access log itself is off

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_s: float) -> None:
        info = request.get(INFO_KEY)
        if info is None:  # no handler ran: aiohttp itself refused the request
            info = RequestInfo(outcome="invalid" if response.status < 500 else "error")
        if self.stats is not None:
            self.stats.observe(info.route, request.method, info.outcome, time_s)
        if info.route == "blob" and self._audit is not None and self._audit.enabled:
            self._audit.submit(_audit_record(request, response, info))
        if self._lines:
            self.logger.info("access", extra={"fields": _access_fields(request, response, info,
                                                                        time_s)})


def _access_fields(
    request: web.BaseRequest, response: web.StreamResponse, info: RequestInfo, time_s: float
) -> dict[str, object]:
    return {
        "ts_start": round(time.time() - time_s, 3),
        "method": request.method,
        "path": redact(request.raw_path.partition("?")[0][:2000]),
        "route": info.route,
        "outcome": info.outcome,
        "repository": info.repository,
        "digest": info.digest,
        "user": info.user,
        "status": response.status,
        "bytes": response.body_length,
        "duration_ms": round(time_s * 1000, 3),
        "client": request.remote,
    }


def _audit_record(
    request: web.BaseRequest, response: web.StreamResponse, info: RequestInfo
) -> AuditRecord:
    return AuditRecord(
        at=datetime.now(UTC),
        user_name=info.user or "",
        repository=info.repository or "",
        digest=info.digest or "",
        method=request.method,
        outcome=info.outcome,
        status=response.status,
        client=request.remote or "",
    )
