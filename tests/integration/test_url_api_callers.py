"""Who may ask the URL APIs: Basic credentials exchanged at a token service (counted, so
caching shows; its secrets can be rotated), and the seed endpoint's administrators
without a repository, decided by the upstream's ``/api/v2.0/users/current`` (a Harbor
stand-in)."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from blobgate.app import SERVICES
from blobgate.config import ApiConfig, AuthConfig

from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import ISSUER, SERVICE, Signer

Standin = tuple[StandIn, Any]
NAME = "proj/app"
ROBOT = "robot$proj+ci"
USERS = {ROBOT: "s3cret-robot-password", "viewer": "viewer-password"}
GRANTS = {"robot$proj+ci": [NAME]}  # viewer may pull nothing


def basic(username: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


class TokenService:
    """A token service that checks Basic credentials against ``users`` (a copy of
    ``USERS``, changed to rotate a secret) and grants by ``GRANTS`` for ``life_s``."""

    def __init__(self, signer: Signer) -> None:
        self.signer, self.requests = signer, 0
        self.users, self.life_s = dict(USERS), 300

    async def token(self, request: web.Request) -> web.Response:
        self.requests += 1
        assert request.query["service"] == SERVICE
        username, _, password = base64.b64decode(
            request.headers.get("Authorization", "Basic Og==")[6:]).decode().partition(":")
        if self.users.get(username) != password:
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        wanted = request.query["scope"].split(":")[1]
        allowed = wanted if wanted in GRANTS.get(username, []) else None
        token = self.signer.token(allowed, sub=username, exp=int(time.time()) + self.life_s)
        return web.json_response({"token": token, "access_token": token,
                                  "expires_in": self.life_s})


@pytest.fixture
async def tokens(signer: Signer) -> AsyncIterator[tuple[TokenService, str]]:
    service = TokenService(signer)
    app = web.Application()
    app.router.add_get("/service/token", service.token)
    server = TestServer(app)
    await server.start_server()
    yield service, str(server.make_url("/service/token"))
    await server.close()


def frozen_clock(client: Any) -> list[float]:
    """Make the gateway's credential exchanges read time from the returned cell."""
    now = [time.time()]
    callers = client.server.app[SERVICES].api.callers
    callers._clock = callers.exchanges._clock = lambda: now[0]
    return now


@pytest.fixture
def digest(put_blob: Any, standin: Standin) -> str:
    data = os.urandom(3000)
    found: str = put_blob(data)
    standin[0].blobs[(NAME, found)] = data
    return found


def auth(bundle: Any, realm: str) -> AuthConfig:
    return AuthConfig(issuer=ISSUER, service=SERVICE, certificates=str(bundle), realm=realm)


async def test_basic_credentials_are_exchanged_once_per_credentials_ttl(
    gateway: GatewayFactory, tokens: tuple[TokenService, str], bundle: Any, digest: str,
) -> None:
    service, realm = tokens
    client = await gateway(auth=auth(bundle, realm))
    robot = basic(ROBOT, USERS[ROBOT])
    for path in (f"/api/v1/blobs/{digest}/url?repository={NAME}",
                 f"/api/v2.0/blobs/{digest}/url?repository={NAME}"):
        response = await client.get(path, headers=robot)
        assert response.status == 200
        assert "url" in await response.json()
    assert service.requests == 1  # one exchange, kept for api.credentials_ttl_s
    keys = client.server.app[SERVICES].api.callers.exchanges._data  # type: ignore[union-attr]
    assert all(USERS[ROBOT].encode() not in key for key in keys)


async def test_a_rotated_secret_stops_getting_urls_within_credentials_ttl(
    gateway: GatewayFactory, tokens: tuple[TokenService, str], bundle: Any, digest: str,
) -> None:
    service, realm = tokens
    client = await gateway(auth=auth(bundle, realm), api=ApiConfig(credentials_ttl_s=5))
    now = frozen_clock(client)
    path = f"/api/v2.0/blobs/{digest}/url?repository={NAME}"
    old = basic(ROBOT, USERS[ROBOT])
    assert (await client.get(path, headers=old)).status == 200
    service.users[ROBOT] = "rotated-robot-password"
    now[0] += 4.5
    assert (await client.get(path, headers=old)).status == 200  # the exchange, still kept
    assert service.requests == 1
    now[0] += 1
    refused = await client.get(path, headers=old)
    assert refused.status == 401
    assert "url" not in await refused.json()
    assert service.requests == 2
    new = await client.get(path, headers=basic(ROBOT, "rotated-robot-password"))
    assert new.status == 200
    assert "url" in await new.json()


async def test_an_exchange_is_never_kept_past_its_tokens_exp(
    gateway: GatewayFactory, tokens: tuple[TokenService, str], bundle: Any, digest: str,
) -> None:
    service, realm = tokens
    service.life_s = 60
    client = await gateway(auth=auth(bundle, realm), api=ApiConfig(credentials_ttl_s=600))
    now = frozen_clock(client)
    path = f"/api/v2.0/blobs/{digest}/url?repository={NAME}"
    robot = basic(ROBOT, USERS[ROBOT])
    assert (await client.get(path, headers=robot)).status == 200
    now[0] += 30
    assert (await client.get(path, headers=robot)).status == 200
    assert service.requests == 1
    now[0] += 31  # past the token's exp, well within credentials_ttl_s
    assert (await client.get(path, headers=robot)).status == 200
    assert service.requests == 2


async def test_wrong_or_insufficient_credentials_get_no_url(
    gateway: GatewayFactory, tokens: tuple[TokenService, str], bundle: Any, digest: str,
    scrape: Scrape,
) -> None:
    service, realm = tokens
    client = await gateway(auth=auth(bundle, realm))
    path = f"/api/v2.0/blobs/{digest}/url?repository={NAME}"
    for _ in range(3):
        wrong = await client.get(path, headers=basic(ROBOT, "guess"))
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
