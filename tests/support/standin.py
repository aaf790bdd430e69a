"""A small registry stand-in for edge cases the real registry cannot be made to show.

It knows which blobs are in which repository, answers blob HEAD/GET the way
distribution does (401 without credentials, 404 BLOB_UNKNOWN, 307 or 200), and offers
a few routes for proxy behaviour: echo, slow, broken, gzip and absolute Locations.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from blobgate.config import ProxyConfig

UNAUTHORIZED = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
UNKNOWN = {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]}


def _ranged(request: web.Request, data: bytes) -> web.Response:
    """``data``, or the single range the request asks for (206)."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
    if match is None:
        return web.Response(body=data, content_type="application/octet-stream")
    first = int(match[1])
    last = int(match[2]) if match[2] else len(data) - 1
    return web.Response(
        status=206, body=data[first : last + 1], content_type="application/octet-stream",
        headers={"Content-Range": f"bytes {first}-{last}/{len(data)}"},
    )


@dataclass
class StandIn:
    """State and request log of the stand-in registry."""

    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    head_redirects: bool = True
    get_redirects: bool = False
    redirect_to: str | None = None  # the Location of those redirects ({digest} filled in)
    requests: list[tuple[str, str]] = field(default_factory=list)
    storage_auth: list[str | None] = field(default_factory=list)
    trickling: set[str] = field(default_factory=set)
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)  # valid tokens this registry refuses
    head_delay_s: float = 0.0  # a blob HEAD answered this late
    users: dict[str, tuple[str, bool]] = field(default_factory=dict)  # Harbor: password, admin?
    finalize_s: float = 0.0  # echoed requests answered this long after their last byte
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)
    stream_ended_early: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)

    def challenge(self, request: web.Request) -> web.Response | None:
        """The registry's 401 for a request without a Bearer token or with a refused one
        (read as distribution reads it: the scheme in any case, one space, the token)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        well_formed = token and not any(c.isspace() for c in token)
        if scheme.lower() == "bearer" and well_formed and token not in self.refused:
            return None
        return web.json_response(
            UNAUTHORIZED, status=401,
            headers={"WWW-Authenticate": 'Bearer realm="http://issuer/token",service="t"'},
        )

    async def blob(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.raw_path))
        refusal = self.challenge(request)
        if refusal is not None:
            return refusal
        if request.match_info["digest"] in self.trickling:
            return await self.trickle(request)
        data = self.blobs.get((request.match_info["name"], request.match_info["digest"]))
        if data is None:
            return web.json_response(UNKNOWN, status=404)
        # Like a registry's storage redirect: absolute, to another origin (here the same
        # server under another name), unless told otherwise.
        storage = self.redirect_to or (
            f"{request.scheme}://localhost:{request.url.port}/storage/{{digest}}")
        digest = request.match_info["digest"]
        if request.method == "HEAD":
            await asyncio.sleep(self.head_delay_s)
        if request.method == "HEAD" and self.head_redirects:
            raise web.HTTPTemporaryRedirect(storage.format(digest=digest))
        if request.method == "GET" and self.get_redirects:
            raise web.HTTPTemporaryRedirect(storage.format(digest=digest))
        return _ranged(request, data)

    async def base(self, request: web.Request) -> web.Response:
        """``/v2/``: the API version check, challenging clients without credentials."""
        self.requests.append((request.method, request.raw_path))
        if "Authorization" not in request.headers:
            return web.json_response(
                UNAUTHORIZED, status=401,
                headers={"WWW-Authenticate": 'Bearer realm="http://issuer/token",service="t"'},
            )
        return web.json_response({})

    async def manifest(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.raw_path))
        refusal = self.challenge(request)
        if refusal is not None:
            return refusal
        found = self.manifests.get((request.match_info["name"], request.match_info["ref"]))
        if found is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        return web.Response(body=found[1], headers={"Content-Type": found[0]})

    async def storage(self, request: web.Request) -> web.Response:
        """Where the registry redirects to: records whether a token was sent along."""
        self.storage_auth.append(request.headers.get("Authorization"))
        digest = request.match_info["digest"]
        data = next((d for (_, dg), d in self.blobs.items() if dg == digest), None)
        if data is None:
            return web.Response(status=404)
        return _ranged(request, data)

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        """A big blob served slowly; notes when the reader went away before the end."""
        response = web.StreamResponse()
        response.content_length = 64 << 20
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        try:
            for _ in range(1024):
                await response.write(b"t" * 65536)
                await asyncio.sleep(0.01)
        except (ConnectionError, asyncio.CancelledError):
            self.stream_ended_early.set()
            raise
        return response

    async def echo(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.raw_path))
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            if size == 0:
                self.first_chunk.set()
            size += len(chunk)
            digest.update(chunk)
        await asyncio.sleep(self.finalize_s)
        summary = {
            "method": request.method,
            "path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "size": size,
            "sha256": digest.hexdigest(),
        }
        return web.Response(text=json.dumps(summary), content_type="application/json",
                            headers={"X-Upstream": "yes", "Connection": "keep-alive, X-Drop",
                                     "X-Drop": "1", "Keep-Alive": "timeout=5"})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    async def broken(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = 1 << 20
        await response.prepare(request)
        await response.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.close()
        return response

    async def gzip(self, request: web.Request) -> web.Response:
        import gzip

        return web.Response(body=gzip.compress(b"hello " * 1000),
                            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})

    async def upload(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.raw_path))
        origin = f"{request.scheme}://{request.host}"
        return web.Response(status=202, headers={
            "Location": f"{origin}/v2/x/blobs/uploads/abc?_state=s%2Fq",
            "Docker-Upload-UUID": "abc",
        })

    async def current_user(self, request: web.Request) -> web.Response:
        """Harbor's ``GET /api/v2.0/users/current`` for Basic credentials."""
        self.requests.append((request.method, request.raw_path))
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            username, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            known = self.users.get(username)
            if known is not None and known[0] == password:
                return web.json_response({"username": username, "sysadmin_flag": known[1]})
        return web.json_response(UNAUTHORIZED, status=401)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/api/v2.0/users/current", self.current_user)
        app.router.add_route("*", "/v2/{name:.+}/blobs/uploads/", self.upload)
        app.router.add_route("HEAD", "/v2/{name:.+}/blobs/{digest}", self.blob)
        app.router.add_route("GET", "/v2/{name:.+}/blobs/{digest}", self.blob)
        app.router.add_route("GET", "/v2/", self.base)
        app.router.add_route("GET", "/v2/{name:.+}/manifests/{ref}", self.manifest)
        app.router.add_route("HEAD", "/v2/{name:.+}/manifests/{ref}", self.manifest)
        app.router.add_route("*", "/storage/{digest}", self.storage)
        app.router.add_route("GET", "/slow", self.slow)
        app.router.add_route("GET", "/broken", self.broken)
        app.router.add_route("GET", "/gzip", self.gzip)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        return app


def storage_on_loopback(standin: tuple[StandIn, Any]) -> ProxyConfig:
    """The proxy backend allowed to follow the stand-in's redirects to its storage, which
    is on loopback under the name ``localhost``."""
    return ProxyConfig(redirect_hosts=(f"localhost:{standin[1].port}",),
                       allow_private_redirects=True)
