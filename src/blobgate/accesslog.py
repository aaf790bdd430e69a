"""One JSON line per request, and JSON formatting for every other log record.

Handlers describe what they did in a ``RequestInfo`` stored on the request; aiohttp's
access-log hook turns it into a line once the response is done. Paths are logged
without their query (upload-session state lives there) and tokens never reach a log.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from blobgate.metrics import STATS


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


class JSONFormatter(logging.Formatter):
    """Formats records as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


class AccessLogger(AbstractAccessLogger):
    """aiohttp's per-request hook: records metrics, and writes the access line if enabled."""

    @property
    def enabled(self) -> bool:
        return True  # metrics are recorded even when the access log itself is off

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_s: float) -> None:
        info = info_of(request)
        stats = request.app[STATS] if isinstance(request, web.Request) else None
        if stats is not None:
            stats.observe(info.route, request.method, info.outcome, time_s)
            if info.outcome in ("passthrough", "denied", "not_found"):
                stats.streamed_bytes += response.body_length
        if not self.logger.isEnabledFor(logging.INFO):
            return
        fields = {
            "ts_start": round(time.time() - time_s, 3),
            "method": request.method,
            "path": request.raw_path.partition("?")[0],
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
        self.logger.info("access", extra={"fields": fields})


def configure(level: str) -> None:
    """Send all logs to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
