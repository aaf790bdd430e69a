"""The presigned-URL API, for tools other than registry clients (CI pre-fetchers,
scanners, air-gap exporters) that want the URL itself, one or many at a time.

``GET /api/v1/blobs/<digest>/url?repository=<name>&expires_in=&filename=&cache_control=``
and ``POST /api/v1/blobs/urls`` with ``{"repository", "digests", "expires_in"}``. The
token rules are those of blob pulls; this API is blobgate's own, so a missing or
insufficient token gets blobgate's ``401`` with a challenge for the repository. Every URL
handed out is written to the audit trail.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from blobgate.accesslog import info_of
from blobgate.audit import Audit, AuditRecord
from blobgate.auth import bearer_token
from blobgate.blobs import BlobService
from blobgate.challenge import Challenge
from blobgate.errors import (
    BlobUnknown,
    InvalidParameter,
    NotInStorage,
    RegistryError,
    StorageError,
    StorageUnavailable,
    Unauthorized,
)
from blobgate.gate import REFUSED, Denied, Pull
from blobgate.reference import BlobRef, parse_blob, parse_name
from blobgate.signing import Presigner, URLOptions

URL_PATH = re.compile(r"/api/v1/blobs/([^/]+)/url")
BATCH_PATH = "/api/v1/blobs/urls"
_SECONDS = re.compile(r"[0-9]{1,9}")
_FILENAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
_CACHE_CONTROL = re.compile(r"[A-Za-z0-9=, -]{1,200}")


def expires_in(text: str | None, default: int, limit: int) -> int:
    """The requested URL life in seconds, within 1 .. ``limit``; else ``InvalidParameter``."""
    allowed = f"expires_in must be a whole number of seconds from 1 to {limit}"
    if text is None:
        if limit < 1:
            raise InvalidParameter("the signing credentials have expired")
        return min(default, limit)
    if _SECONDS.fullmatch(text) is None or not 1 <= int(text) <= limit:
        raise InvalidParameter(allowed, {"expires_in": text[:40]})
    return int(text)


def _optional(text: str | None, pattern: re.Pattern[str], key: str) -> str | None:
    if text is not None and pattern.fullmatch(text) is None:
        raise InvalidParameter(f"{key} has characters that are not allowed", {key: text[:80]})
    return text


@dataclass
class UrlApi:
    """Answers the URL API for the gateway's ``BlobService``."""

    blobs: BlobService
    audit: Audit
    challenge: Challenge
    max_batch: int
    concurrency: int
    max_expires_s: int

    async def one(self, request: web.BaseRequest, raw_digest: str) -> web.Response:
        """``GET /api/v1/blobs/<digest>/url``."""
        query = request.query
        ref = parse_blob(query.get("repository", ""), raw_digest)
        pull = await self._authorize(request, ref.name)
        presigner = self.blobs.presigner_for(request, custom=bool(
            query.keys() & {"filename", "cache_control"}))
        options = URLOptions(
            expires_s=expires_in(query.get("expires_in"), presigner.default_expires_s,
                                 self._limit(presigner)),
            filename=_optional(query.get("filename"), _FILENAME, "filename"),
            cache_control=_optional(query.get("cache_control"), _CACHE_CONTROL, "cache_control"),
        )
        entry = await self._sign(request, ref, pull, presigner, options)
        if "error" in entry:
            raise BlobUnknown("blob unknown to repository", {"digest": raw_digest[:200]})
        return web.json_response(entry)

    async def batch(self, request: web.BaseRequest) -> web.Response:
        """``POST /api/v1/blobs/urls``."""
        body = await self._json(request)
        repository = body.get("repository")
        name = parse_name(repository if isinstance(repository, str) else "")
        digests = body.get("digests")
        if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
            raise InvalidParameter("digests must be a list of digest strings")
        if not 1 <= len(digests) <= self.max_batch:
            raise InvalidParameter(f"digests must hold 1 to {self.max_batch} entries")
        pull = await self._authorize(request, name)
        presigner = self.blobs.presigner_for(request, custom=False)
        raw = body.get("expires_in")
        options = URLOptions(expires_s=expires_in(
            None if raw is None else str(raw), presigner.default_expires_s,
            self._limit(presigner)))
        limit = asyncio.Semaphore(self.concurrency)

        async def entry(digest: str) -> dict[str, Any]:
            async with limit:
                try:
                    ref = parse_blob(name, digest)
                except RegistryError as exc:
                    return {"digest": digest[:200], "error": {"code": exc.code,
                                                              "message": exc.message}}
                return await self._sign(request, ref, pull, presigner, options)

        entries = await asyncio.gather(*(entry(d) for d in digests))
        return web.json_response({"repository": name, "urls": entries})

    def _limit(self, presigner: Presigner) -> int:
        """The longest URL life allowed now: the operator's cap, or the signer's own limit."""
        return min(self.max_expires_s, presigner.max_expires_s())

    async def _json(self, request: web.BaseRequest) -> dict[str, Any]:
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise InvalidParameter("the body must be JSON") from None
        if not isinstance(body, dict):
            raise InvalidParameter("the body must be a JSON object")
        return body

    async def _authorize(self, request: web.BaseRequest, name: str) -> Pull:
        """The client's token, if it grants pull on ``name``."""
        info = info_of(request)
        info.route, info.repository = "api", name
        values = request.headers.getall("Authorization", [])
        grant = self.blobs.gate.verifier.grant(values)
        if grant is None or not grant.can_pull(name):
            if grant is not None:
                error: str | None = "insufficient_scope"
            else:
                error = "invalid_token" if bearer_token(values) is not None else None
            raise Unauthorized("authentication required", await self.challenge.header(
                f"repository:{name}:pull", error))
        info.user = grant.subject
        return Pull(values[0], grant, name, "blobs")

    async def _sign(
        self,
        request: web.BaseRequest,
        ref: BlobRef,
        pull: Pull,
        presigner: Presigner,
        options: URLOptions,
    ) -> dict[str, Any]:
        digest = str(ref.digest)
        member = await self.blobs.gate.admit(ref, pull.authorization, pull.grant)
        if member is REFUSED:
            raise Unauthorized("the registry refused this token", await self.challenge.header(
                f"repository:{ref.name}:pull", "invalid_token"))
        unknown = {"digest": digest, "error": {"code": "BLOB_UNKNOWN",
                                               "message": "blob unknown to repository"}}
        if isinstance(member, Denied):
            return unknown
        try:
            size = await self.blobs.stored_size(ref.digest)  # never a URL to nothing
            signed = await presigner.presign_blob(ref.digest, options)
        except NotInStorage:
            return unknown
        except StorageError as exc:
            raise StorageUnavailable("storage unavailable", {"reason": exc.reason}) from None
        info_of(request).outcome = "url"
        self.audit.submit(AuditRecord(
            at=datetime.now(UTC), user_name=info_of(request).user or "", repository=ref.name,
            digest=digest, method=request.method, outcome="url", status=200,
            client=request.remote or "",
        ))
        expires = datetime.fromtimestamp(signed.expires_at, UTC).isoformat(timespec="seconds")
        return {"digest": digest, "url": signed.url, "size": size,
                "expires_at": expires.replace("+00:00", "Z")}
