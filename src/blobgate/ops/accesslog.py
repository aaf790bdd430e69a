"""What happened to each request: metrics, one access line and an audit record.

Handlers describe what they did in a ``RequestInfo`` stored on the request (the
``decision`` they returned: outcome and reason); aiohttp's
access-log hook turns it into metrics, a log line and an audit record once the response
is done. Lines are encoded here from fields blobgate built, not through ``logging``
(see ``logs``): of them only the path, which a client writes freely, can hold a secret,
so only the path is redacted, and it is logged without its query (upload-session state
lives there). With the audit trail in the log (``audit.sink: log``), a blob request's
audit line carries its access line's fields and stands in for it: one line per request.
A blob request's line names the ``location`` its bytes came from (a copy's name,
``primary``; none when the registry answered). Each line names the ``client`` blobgate
decided on (behind a trusted proxy, the address
``X-Forwarded-For`` gives; what routing uses) and the TCP ``peer``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from blobgate.ops.audit import AUDIT, AuditRecord, LogAudit
from blobgate.ops.logs import STDERR, LineWriter, encode
from blobgate.ops.metrics import STATS, Stats
from blobgate.ops.redact import redact
from blobgate.routing.policy import TRUSTED, Address, forwarded_client, parse_address

LINES = web.AppKey("lines", LineWriter)
ACCESS_LOGGER = "blobgate.access"


@dataclass(slots=True)
class RequestInfo:
    """What blobgate decided for one request."""

    route: str = "passthrough"
    outcome: str = "passthrough"
    repository: str | None = None
    digest: str | None = None
    user: str | None = None
    reason: str | None = None  # why: ``decision``
    location: str | None = None  # where a blob request's bytes came from (a copy, primary)


INFO_KEY = web.RequestKey("blobgate.info", RequestInfo)


def info_of(request: web.BaseRequest) -> RequestInfo:
    """The request's ``RequestInfo``, created on first use."""
    info = request.get(INFO_KEY)
    if info is None:
        info = RequestInfo()
        request[INFO_KEY] = info
    return info


class AccessLogger(AbstractAccessLogger):
    """aiohttp's per-request hook: records metrics, and writes the request's line.

    Use ``AccessLogger.bound(app)``: requests carry no application (they are served by
    aiohttp's low-level server), and aiohttp calls the hook also for requests it refused
    before any handler ran, which must be counted too. aiohttp makes one hook per
    connection, so per-connection facts (the peer's address, whether it is a trusted
    proxy, whether lines are on) are settled here once; only a trusted proxy's requests
    name clients of their own.
    """

    app: ClassVar[web.Application | None] = None
    stats: ClassVar[Stats | None] = None
    access_lines: ClassVar[bool] = True  # ``log.access_log``

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._access = self.access_lines and logger.isEnabledFor(logging.INFO)
        app = self.app
        audit = None if app is None else app.get(AUDIT)  # set at start-up
        if audit is not None and not audit.enabled:
            audit = None
        self._audit_lines = audit if isinstance(audit, LogAudit) else None
        self._audit = None if self._audit_lines is not None else audit
        self._lines = STDERR if app is None else app[LINES]
        self._trusted = () if app is None else app.get(TRUSTED, ())
        self._peer: tuple[str | None, Address | None, str | None] | None = None

    @classmethod
    def bound(cls, app: web.Application, access_lines: bool = True) -> type[AccessLogger]:
        """A hook class that records into ``app``'s metrics, audit trail and lines (access
        lines only with ``access_lines``, at ``log.level`` info or debug)."""
        return type("BoundAccessLogger", (cls,),
                    {"app": app, "stats": app[STATS], "access_lines": access_lines})

    @property
    def enabled(self) -> bool:
        return True  # metrics are recorded even when the access log itself is off

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_s: float) -> None:
        info = request.get(INFO_KEY)
        if info is None:  # no handler ran: aiohttp itself refused the request
            info = RequestInfo(outcome="invalid" if response.status < 500 else "error")
        if self.stats is not None:
            self.stats.observe(info.route, request.method, info.outcome, time_s)
        if info.route == "blob":
            if self._audit_lines is not None:
                now = time.time()
                self._audit_lines.submit_request(
                    self._fields(request, response, info, time_s, now), now)
                return
            if self._audit is not None:
                self._audit.submit(self._record(request, response, info))
        if self._access:
            self._lines.write(encode(self._fields(request, response, info, time_s,
                                                  time.time())))

    def _fields(self, request: web.BaseRequest, response: web.StreamResponse,
                info: RequestInfo, time_s: float, now: float) -> dict[str, object]:
        """The access line of a request that ended ``now`` (times to the millisecond,
        durations to the microsecond, truncated: ``round`` costs a float-to-text trip).
        The path is without its query, and scrubbed unless it is a blob path that parsed
        (a name and a digest of the registry's grammar, nothing else)."""
        path = request.raw_path.partition("?")[0]
        if info.digest is None or info.route != "blob" or not path.startswith("/v2/"):
            path = redact(path[:2000])
        client, peer = self._addresses(request)
        return {
            "ts": int(now * 1000) / 1000,
            "level": "info",
            "logger": ACCESS_LOGGER,
            "ts_start": int((now - time_s) * 1000) / 1000,
            "method": request.method,
            "path": path,
            "route": info.route,
            "outcome": info.outcome,
            "reason": info.reason,
            "repository": info.repository,
            "digest": info.digest,
            "user": info.user,
            "location": info.location,
            "status": response.status,
            "bytes": response.body_length,
            "duration_ms": int(time_s * 1_000_000) / 1000,
            "client": client,
            "peer": peer,
        }

    def _addresses(self, request: web.BaseRequest) -> tuple[str | None, str | None]:
        """The client blobgate decided on (as routing does) and the TCP peer, as text."""
        if self._peer is None:  # one peer per connection
            address = parse_address(request.remote)
            text = request.remote if address is None else str(address)
            self._peer = (request.remote, address, text)
        peer, address, text = self._peer
        client = forwarded_client(address, request, self._trusted)
        if client is address:
            return text, peer
        return None if client is None else str(client), peer

    def _record(self, request: web.BaseRequest, response: web.StreamResponse,
                info: RequestInfo) -> AuditRecord:
        client, peer = self._addresses(request)
        return AuditRecord(
            at=datetime.now(UTC),
            user_name=info.user or "",
            repository=info.repository or "",
            digest=info.digest or "",
            method=request.method,
            outcome=info.outcome,
            status=response.status,
            reason=info.reason or "",
            client=client or "",
            peer=peer or "",
        )
