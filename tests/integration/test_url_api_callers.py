"""Who may ask the URL APIs: Basic credentials exchanged at a token service (counted, so
caching shows), and the seed endpoint's administrators without a repository, decided
by the upstream's ``/api/v2.0/users/current`` (a Harbor stand-in)."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from blobgate.app import SERVICES
from blobgate.config import AuthConfig

from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import ISSUER, SERVICE, Signer

Standin = tuple[StandIn, Any]
NAME = "proj/app"
USERS = {"robot$proj+ci": "s3cret-robot-password", "viewer": "viewer-password"}
GRANTS = {"robot$proj+ci": [NAME]}  # viewer may pull nothing


def basic(username: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


class TokenService:
    """A token service that checks Basic credentials and grants by ``GRANTS``."""

    def __init__(self, signer: Signer) -> None:
        self.signer, self.requests = signer, 0

    async def token(self, request: web.Request) -> web.Response:
        self.requests += 1
        assert request.query["service"] == SERVICE
        username, _, password = base64.b64decode(
            request.headers.get("Authorization", "Basic Og==")[6:]).decode().partition(":")
        if USERS.get(username) != password:
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        wanted = request.query["scope"].split(":")[1]
        allowed = wanted if wanted in GRANTS.get(username, []) else None
        token = self.signer.token(allowed, sub=username)
        return web.json_response({"token": token, "access_token": token, "expires_in": 300})


@pytest.fixture
async def tokens(signer: Signer) -> AsyncIterator[tuple[TokenService, str]]:
    service = TokenService(signer)
    app = web.Application()
    app.router.add_get("/service/token", service.token)
    server = TestServer(app)
    await server.start_server()
    yield service, str(server.make_url("/service/token"))
    await server.close()


@pytest.fixture
def digest(put_blob: Any, standin: Standin) -> str:
    data = os.urandom(3000)
    found: str = put_blob(data)
    standin[0].blobs[(NAME, found)] = data
    return found


def auth(bundle: Any, realm: str) -> AuthConfig:
    return AuthConfig(issuer=ISSUER, service=SERVICE, certificates=str(bundle), realm=realm)


async def test_basic_credentials_are_exchanged_once_per_token_life(
    gateway: GatewayFactory, tokens: tuple[TokenService, str], bundle: Any, digest: str,
) -> None:
    service, realm = tokens
    client = await gateway(auth=auth(bundle, realm))
    robot = basic("robot$proj+ci", USERS["robot$proj+ci"])
    for path in (f"/api/v1/blobs/{digest}/url?repository={NAME}",
                 f"/api/v2.0/blobs/{digest}/url?repository={NAME}"):
        response = await client.get(path, headers=robot)
        assert response.status == 200
        assert "url" in await response.json()
    assert service.requests == 1  # one exchange, kept for the token's life
    keys = client.server.app[SERVICES].api.callers.exchanges._data  # type: ignore[union-attr]
    assert all(USERS["robot$proj+ci"].encode() not in key for key in keys)


async def test_wrong_or_insufficient_credentials_get_no_url(
    gateway: GatewayFactory, tokens: tuple[TokenService, str], bundle: Any, digest: str,
    scrape: Scrape,
) -> None:
    service, realm = tokens
    client = await gateway(auth=auth(bundle, realm))
    path = f"/api/v2.0/blobs/{digest}/url?repository={NAME}"
    for _ in range(3):
        wrong = await client.get(path, headers=basic("robot$proj+ci", "guess"))
        assert wrong.status == 401
        assert wrong.headers["WWW-Authenticate"].startswith(f'Bearer realm="{realm}"')
    assert service.requests == 1  # the refusal is remembered: no guessing at its expense
    viewer = await client.get(path, headers=basic("viewer", USERS["viewer"]))
    assert viewer.status == 403
    assert (await viewer.json())["errors"][0]["code"] == "DENIED"


@pytest.mark.parametrize(("user", "status"), [("root", 200), ("dev", 403), ("nobody", 401)])
async def test_without_a_repository_only_an_administrator_gets_a_url(
    gateway: GatewayFactory, standin: Standin, digest: str, user: str, status: int,
) -> None:
    standin[0].users.update({"root": ("root-pw", True), "dev": ("dev-pw", False)})
    client = await gateway()
    response = await client.get(f"/api/v2.0/blobs/{digest}/url",
                                headers=basic(user, f"{user}-pw"))
    assert response.status == status
    body = await response.json()
    assert ("url" in body) is (status == 200)
    if status == 200:
        assert set(body) == {"url", "expires_at"}
