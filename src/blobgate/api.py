"""The presigned-URL API, for tools other than registry clients (CI pre-fetchers,
scanners, air-gap exporters) that want the URL itself, one or many at a time.

``GET /api/v1/blobs/<digest>/url?repository=<name>&expires_in=&filename=&cache_control=``
and ``POST /api/v1/blobs/urls`` with ``{"repository", "digests", "expires_in"}``, and the
seed's ``GET /api/v2.0/blobs/<digest>/url?expires_in=3600&repository=<name>`` answering
``{"url", "expires_at"}`` (in front of Harbor, that path is otherwise Harbor's API).
The caller needs pull on the repository (a Bearer token, or Basic credentials exchanged
at the token service: ``callers``) and the blob must be in it and in storage; without a
repository (seed endpoint only) the caller must be a system administrator. This API is
blobgate's own, so refusals are blobgate's ``401``/``403`` with a challenge. Every URL
handed out is written to the audit trail.

The URL points where a blob GET from the caller would be redirected: the first copy of
the caller's route (``routing.rules[].locations``) seen to hold the blob, else the
registry's store.

A batch answers each distinct digest once, in the order first given (a repeated digest is
not answered again), so ``[d] * 100`` costs what ``[d]`` does: one look at storage, one
signature, one audit record. Whether a blob is in storage is the blob path's own cached
answer (``URLCache``), shared with redirects and with concurrent callers.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from blobgate.auth.callers import Callers
from blobgate.auth.pulls import Pull
from blobgate.backends.contract import URL_OPTIONS, Presigner, URLOptions
from blobgate.blobs import BlobService
from blobgate.decision import NOT_IN_STORAGE, URL_SIGNED, Decision
from blobgate.errors import (
    BlobUnknown,
    InvalidParameter,
    NotInStorage,
    RegistryError,
    StorageError,
    StorageUnavailable,
    Unauthorized,
)
from blobgate.gate import REFUSED, Denied
from blobgate.jsontext import parse
from blobgate.ops.accesslog import info_of
from blobgate.ops.audit import Audit, AuditRecord
from blobgate.reference import BlobRef, Digest, parse_blob, parse_digest, parse_name
from blobgate.registry.bodies import read_body
from blobgate.routing.policy import client_address

URL_PATH = re.compile(r"/api/(v1|v2\.0)/blobs/([^/]+)/url")
BATCH_PATH = "/api/v1/blobs/urls"
SEED_DEFAULT_EXPIRES_S = 3600
MAX_BODY_BYTES = 1 << 20  # aiohttp's own default limit on a request read whole
WEEK_S = 7 * 24 * 3600
_SECONDS = re.compile(r"[0-9]{1,9}")
_FILENAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
_CACHE_CONTROL = re.compile(r"[A-Za-z0-9=, -]{1,200}")
_UNKNOWN = {"code": "BLOB_UNKNOWN", "message": "blob unknown to repository"}


def expires_in(text: str | None, default: int, limit: int, seed: bool = False) -> int:
    """The requested URL life in seconds, within 1 .. ``limit``; else ``InvalidParameter``
    (worded as the seed's design words it for its endpoint)."""
    if text is None:
        if limit < 1:
            raise InvalidParameter("the signing credentials have expired")
        return min(default, limit)
    if _SECONDS.fullmatch(text) is None or not 1 <= int(text) <= limit:
        longest = "7 days" if limit == WEEK_S else f"{limit} seconds"
        allowed = (f"expires_in must be between 1 second and {longest}" if seed
                   else f"expires_in must be a whole number of seconds from 1 to {limit}")
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
    callers: Callers
    max_batch: int
    concurrency: int
    max_expires_s: int
    body_timeout_s: float  # server.client_body_timeout_s

    async def route(self, request: web.BaseRequest, target: str) -> web.StreamResponse | None:
        """The answer for an API request, or ``None`` when the path is not this API's."""
        path = target.partition("?")[0]
        match = URL_PATH.fullmatch(path)
        if request.method == "GET" and match is not None:
            info_of(request).route = "api"
            if match[1] == "v1":
                return await self.one(request, match[2])
            return await self.seed(request, match[2])
        if request.method == "POST" and path == BATCH_PATH:
            info_of(request).route = "api"
            return await self.batch(request)
        return None

    async def one(self, request: web.BaseRequest, raw_digest: str) -> web.Response:
        """``GET /api/v1/blobs/<digest>/url``."""
        query = request.query
        ref = parse_blob(query.get("repository", ""), raw_digest)
        pull = await self._authorize(request, ref.name)
        custom = URL_OPTIONS & query.keys()
        presigner = self.blobs.presigner_for(request, custom=bool(custom))
        if custom - presigner.options:
            raise InvalidParameter(f"{' and '.join(sorted(custom - presigner.options))} cannot "
                                   f"be signed into {presigner.name} URLs")
        options = URLOptions(
            expires_s=expires_in(query.get("expires_in"), presigner.default_expires_s,
                                 self._limit(presigner)),
            filename=_optional(query.get("filename"), _FILENAME, "filename"),
            cache_control=_optional(query.get("cache_control"), _CACHE_CONTROL, "cache_control"),
        )
        return web.json_response(_found(await self._sign(request, ref, pull, presigner,
                                                         options)))

    async def seed(self, request: web.BaseRequest, raw_digest: str) -> web.Response:
        """``GET /api/v2.0/blobs/<digest>/url``: ``{"url", "expires_at"}``."""
        query = request.query
        digest = parse_digest(raw_digest)
        presigner = self.blobs.presigner_for(request, custom=False)
        options = URLOptions(expires_s=expires_in(query.get("expires_in"),
                                                  SEED_DEFAULT_EXPIRES_S, self._limit(presigner),
                                                  seed=True))
        name = query.get("repository")
        if name is None:
            info = info_of(request)
            info.user = await self.callers.administrator(request)
            entry = await self._issue(request, digest, "", presigner, options)
        else:
            ref = parse_blob(name, raw_digest)
            pull = await self._authorize(request, ref.name)
            entry = await self._sign(request, ref, pull, presigner, options)
        found = _found(entry)
        return web.json_response({"url": found["url"], "expires_at": found["expires_at"]})

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
        digests = list(dict.fromkeys(digests))  # each distinct digest once, first order
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
            body = parse(await read_body(request, self.body_timeout_s, MAX_BODY_BYTES))
        except ValueError:
            raise InvalidParameter("the body must be JSON") from None
        if not isinstance(body, dict):
            raise InvalidParameter("the body must be a JSON object")
        return body

    async def _authorize(self, request: web.BaseRequest, name: str) -> Pull:
        """The caller's pull grant on ``name`` (Bearer, or Basic exchanged for a token)."""
        info = info_of(request)
        info.repository = name
        pull = await self.callers.pull(request, name)
        info.user = pull.grant.subject
        return pull

    async def _sign(self, request: web.BaseRequest, ref: BlobRef, pull: Pull,
                    presigner: Presigner, options: URLOptions) -> dict[str, Any]:
        """A URL for ``ref`` if the gate admits the caller's token to it."""
        member = await self.blobs.gate.admit(ref, pull.authorization, pull.grant)
        if member is REFUSED:
            info_of(request).reason = member.decision.reason
            raise Unauthorized("the registry refused this token", await self.callers.challenge(
                f"repository:{ref.name}:pull"))
        if isinstance(member, Denied):
            return _unknown(request, ref.digest, member.decision)
        return await self._issue(request, ref.digest, ref.name, presigner, options)

    async def _issue(self, request: web.BaseRequest, digest: Digest, repository: str,
                     presigner: Presigner, options: URLOptions) -> dict[str, Any]:
        """A URL for a blob that is in storage, recorded in the audit trail."""
        try:  # never a URL to nothing: the location signing holds the blob
            presigner, size = await self.blobs.stored_at(request, repository, digest,
                                                         presigner, options)
            signed = await presigner.presign_blob(digest, options)
        except NotInStorage:
            return _unknown(request, digest, NOT_IN_STORAGE)
        except StorageError as exc:
            raise StorageUnavailable("storage unavailable", {"reason": exc.reason}) from None
        info = info_of(request)
        info.outcome, info.reason = URL_SIGNED
        client = client_address(request, self.blobs.policy.trusted)
        self.audit.submit(AuditRecord(
            at=datetime.now(UTC), user_name=info.user or "", repository=repository,
            digest=str(digest), method=request.method, outcome="url", status=200,
            client="" if client is None else str(client), peer=request.remote or "",
            reason=URL_SIGNED.reason,
        ))
        expires = datetime.fromtimestamp(signed.expires_at, UTC).isoformat(timespec="seconds")
        return {"digest": str(digest), "url": signed.url, "size": size,
                "expires_at": expires.replace("+00:00", "Z")}


def _unknown(request: web.BaseRequest, digest: Digest, why: Decision) -> dict[str, Any]:
    """A batch entry (or the 404 of a single answer) for a blob that cannot be handed
    out, the request's reason ``why`` unless a URL was handed out already."""
    info = info_of(request)
    if info.outcome != URL_SIGNED.outcome:
        info.reason = why.reason
    return {"digest": str(digest), "error": _UNKNOWN}


def _found(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` when it holds a URL; else the 404 its error stands for."""
    if "error" in entry:
        raise BlobUnknown("blob unknown to repository", {"digest": entry["digest"][:200]})
    return entry
