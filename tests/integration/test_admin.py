"""The admin listener of a running ``blobgate serve``: a flush needs the bearer token from
``admin.token_file`` (401 without one, 403 with a wrong one, 200 with it), the token is
re-read when the file changes, no token file means the endpoints are disabled, and the
metrics listener serves /metrics and the probes without any credential, and no admin
endpoint."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from blobgate.devstack.gateway import GatewayProcess

from support.gateway import BUCKET
from support.standin import StandIn
from support.tokens import ISSUER, SERVICE

FLUSH = "/admin/cache/flush"
RELOAD_S = 0.05


def config(upstream: str, bundle: Path, s3: str, token_file: Path | None) -> dict[str, Any]:
    admin: dict[str, Any] = {"reload_interval_s": RELOAD_S}
    if token_file is not None:
        admin["token_file"] = str(token_file)
    return {
        "upstream": {"url": upstream},
        "auth": {"issuer": ISSUER, "service": SERVICE, "certificates": str(bundle)},
        "storage": {"s3": {"bucket": BUCKET, "endpoint_url": s3}},
        "admin": admin,
    }


def write_token(path: Path, text: str) -> None:
    """Rewrite the token file in place, as a Secret update does."""
    path.write_text(text)


@pytest.fixture
def token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture
def token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "admin-token"
    write_token(path, token + "\n")
    return path


@pytest.fixture
def served(tmp_path: Path, standin: tuple[StandIn, Any], bundle: Path, s3_server: Any,
           token_file: Path) -> Iterator[GatewayProcess]:
    upstream = str(standin[1].make_url("")).rstrip("/")
    with GatewayProcess(tmp_path, config(upstream, bundle, s3_server.endpoint_url,
                                         token_file)) as gateway:
        yield gateway


async def post(url: str, token: str | None = None, scheme: str = "Bearer"
               ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
    async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as answer:
        return answer.status, await answer.json(), answer.headers


def error_code(body: dict[str, Any]) -> str:
    [error] = body["errors"]
    code: str = error["code"]
    return code


async def test_a_flush_needs_the_token(served: GatewayProcess, token: str) -> None:
    url = f"{served.admin_url()}{FLUSH}"
    status, body, headers = await post(url)
    assert (status, error_code(body)) == (401, "UNAUTHORIZED")
    assert headers["WWW-Authenticate"] == 'Bearer realm="blobgate-admin"'
    assert (await post(url, token, scheme="Basic"))[0] == 401
    status, body, _ = await post(url, token + "x")
    assert (status, error_code(body)) == (403, "DENIED")
    status, body, _ = await post(url, token[:-1])
    assert (status, error_code(body)) == (403, "DENIED")
    status, body, _ = await post(f"{served.admin_url()}/admin/nothing-here")
    assert status == 401  # no path is told apart without the token
    status, body, _ = await post(url, token)
    assert status == 200
    assert set(body["flushed"]) >= {"membership", "url"}
    assert token not in served.log_text()


async def test_a_token_that_is_not_utf8_is_refused_not_an_error(
    served: GatewayProcess, token: str
) -> None:
    port = int(served.admin_url().rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST " + FLUSH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer \xff\xfe" + token.encode() + b"\r\n"
                 b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert "Traceback" not in served.log_text()


async def test_metrics_and_probes_need_no_token_and_serve_no_admin(
    served: GatewayProcess,
) -> None:
    assert served.admin_port != served.metrics_port
    async with aiohttp.ClientSession() as session:
        for path in ("/metrics", "/healthz", "/readyz"):
            async with session.get(f"{served.metrics_url()}{path}") as answer:
                assert answer.status == 200, (path, await answer.text())
        async with session.post(f"{served.metrics_url()}{FLUSH}") as answer:
            assert answer.status == 404
        async with session.get(f"{served.metrics_url()}/metrics") as answer:
            assert 'blobgate_reload_healthy{file="admin_token"} 1.0' in await answer.text()


async def metrics_text(gateway: GatewayProcess) -> str:
    async with aiohttp.ClientSession() as session, session.get(
            f"{gateway.metrics_url()}/metrics") as answer:
        return await answer.text()


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait for ``check`` to hold (the file watcher looks every ``RELOAD_S``)."""
    for _ in range(400):
        if await check():
            return
        await asyncio.sleep(RELOAD_S)
    pytest.fail("the gateway never picked up the change")


async def test_a_rotated_token_is_picked_up_and_a_bad_one_ignored(
    served: GatewayProcess, token_file: Path, token: str
) -> None:
    url = f"{served.admin_url()}{FLUSH}"
    old, new = token, secrets.token_urlsafe(24)
    write_token(token_file, new)

    async def new_accepted() -> bool:
        return (await post(url, new))[0] == 200

    await eventually(new_accepted)
    assert (await post(url, old))[0] == 403
    write_token(token_file, "short")  # not a token: the last good one stays in force

    async def refused_reload() -> bool:
        return 'blobgate_reload_healthy{file="admin_token"} 0.0' in await metrics_text(served)

    await eventually(refused_reload)
    assert (await post(url, new))[0] == 200
    assert (await post(url, "short"))[0] == 403


async def test_without_a_token_file_admin_is_disabled(
    tmp_path: Path, standin: tuple[StandIn, Any], bundle: Path, s3_server: Any
) -> None:
    upstream = str(standin[1].make_url("")).rstrip("/")
    with GatewayProcess(tmp_path, config(upstream, bundle, s3_server.endpoint_url,
                                         None)) as gateway:
        for token in (None, "", "anything-at-all-0123456789"):
            status, body, _ = await post(f"{gateway.admin_url()}{FLUSH}", token)
            assert (status, error_code(body)) == (403, "DENIED")
            assert "admin.token_file is not set" in body["errors"][0]["message"]
