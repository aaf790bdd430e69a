"""Hostile input that once made a running gateway answer 500 with a traceback: JSON nested
thousands of levels deep (in a token's header, in a URL-API body) and ``Range`` positions
of thousands of digits. Each is answered like any other malformed input: a token that
does not verify goes to the registry, a bad API body is a 400 with OCI error JSON, an
unsatisfiable range a well-formed 416. URL-API bodies that are too large, or that stop
arriving, are answered too (400, 408).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from blobgate.config import RoutingConfig, S3Config, ServerConfig, StorageConfig
from hardening.wire import HOST, Answer, bearer, exchange, parse, request_bytes

from support.gateway import BUCKET, GatewayFactory
from support.standin import StandIn, storage_on_loopback
from support.tokens import Signer

Standin = tuple[StandIn, Any]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def signed(signer: Signer, header: str) -> str:
    """A token with exactly this header text and valid claims, signed by ``signer``."""
    head = b64url(header.encode()) + "." + b64url(json.dumps(signer.claims("library/a")).encode())
    assert isinstance(signer.key, rsa.RSAPrivateKey)
    signature = signer.key.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256())
    return head + "." + b64url(signature)


def tokens(signer: Signer) -> dict[str, str]:
    """Tokens whose header nests deeper than anything reads safely."""
    return {
        # Python's json raises RecursionError; orjson refuses it itself.
        "3000-levels": b64url(nested(3000).encode()) + ".e30.c2ln",
        # Within orjson's own limit (1024), with a trusted kid: refused by blobgate's depth
        # limit before anything else reads it.
        "1000-levels-valid-kid": signed(
            signer, f'{{"alg":"RS256","typ":"JWT","kid":"{signer.kid}","x":{nested(1000)}}}'),
    }


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


@pytest.mark.parametrize("case", ["3000-levels", "1000-levels-valid-kid"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_deeply_nested_token_gets_the_registrys_answer(
    gateway: GatewayFactory, signer: Signer, standin: Standin, blob: tuple[str, bytes],
    caplog: pytest.LogCaptureFixture, method: str, case: str,
) -> None:
    client = await gateway()
    token = tokens(signer)[case]
    standin[0].refused.add(token)  # this registry answers the token with its 401 challenge
    path = f"/v2/library/a/blobs/{blob[0]}"
    with caplog.at_level(logging.INFO):
        answer = await exchange(client.port, method, path, bearer(token))
    assert answer.status == 401
    assert answer.header("WWW-Authenticate") == 'Bearer realm="http://issuer/token",service="t"'
    assert standin[0].count(method, path) == 1  # passed through, as any bad token is
    no_errors_logged(caplog)


def assert_parameter_invalid(answer: Answer) -> None:
    assert answer.status == 400
    assert (answer.header("Content-Type") or "").startswith("application/json")
    assert json.loads(answer.body)["errors"][0]["code"] == "PARAMETER_INVALID"


@pytest.mark.parametrize("depth", [3000, 1000, 65])
async def test_a_deeply_nested_api_body_is_a_400(
    gateway: GatewayFactory, standin: Standin, caplog: pytest.LogCaptureFixture, depth: int
) -> None:
    client = await gateway()
    body = nested(depth).encode()
    with caplog.at_level(logging.INFO):
        answer = await exchange(client.port, "POST", "/api/v1/blobs/urls",
                                [("Content-Type", "application/json"),
                                 ("Content-Length", str(len(body)))], body=body)
    assert_parameter_invalid(answer)
    assert standin[0].requests == []
    no_errors_logged(caplog)


async def test_a_deep_value_inside_a_valid_api_body_is_a_400(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Within orjson's limit, with a valid token: the value reaches no code that recurses."""
    client = await gateway()
    body = (f'{{"repository":"library/a","digests":["{blob[0]}"],'
            f'"expires_in":{nested(1000)}}}').encode()
    with caplog.at_level(logging.INFO):
        answer = await exchange(client.port, "POST", "/api/v1/blobs/urls",
                                [*bearer(signer.token("library/a")),
                                 ("Content-Length", str(len(body)))], body=body)
    assert_parameter_invalid(answer)
    no_errors_logged(caplog)


async def test_moderately_nested_api_bodies_are_still_read(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes],
) -> None:
    """The depth limit refuses nothing a real body holds: extra keys nested 60 deep."""
    client = await gateway()
    body = (f'{{"repository":"library/a","digests":["{blob[0]}"],'
            f'"x":{nested(60)}}}').encode()
    answer = await exchange(client.port, "POST", "/api/v1/blobs/urls",
                            [*bearer(signer.token("library/a")),
                             ("Content-Length", str(len(body)))], body=body)
    assert answer.status == 200
    assert json.loads(answer.body)["urls"][0]["digest"] == blob[0]


async def test_an_api_body_over_a_mebibyte_is_a_400(
    gateway: GatewayFactory, standin: Standin,
) -> None:
    client = await gateway()
    body = b'{"repository":"library/a","digests":[' + b'"x",' * (1 << 18) + b'"x"]}'
    answer = await exchange(client.port, "POST", "/api/v1/blobs/urls",
                            [("Content-Length", str(len(body)))], body=body)
    assert_parameter_invalid(answer)
    assert "1048576 bytes" in json.loads(answer.body)["errors"][0]["message"]


@pytest.mark.timeout(60)
async def test_an_api_body_that_stops_arriving_is_a_408(
    gateway: GatewayFactory, standin: Standin,
) -> None:
    """``server.client_body_timeout_s`` covers the bodies blobgate reads itself too."""
    client = await gateway(server=ServerConfig(client_body_timeout_s=1))
    reader, writer = await asyncio.open_connection(HOST, client.port)
    try:
        writer.write(request_bytes("POST", "/api/v1/blobs/urls",
                                   [("Content-Length", "1000")], client.port) + b'{"repo')
        await writer.drain()
        answer = parse(await reader.read(), "POST")  # answered, then closed
    finally:
        writer.close()
    assert answer.status == 408
    assert json.loads(answer.body)["errors"][0]["code"] == "UNKNOWN"


HUGE = "9" * 5000


@pytest.fixture(params=["stream-rule", "proxy-backend"])
async def streaming(request: pytest.FixtureRequest, gateway: GatewayFactory,
                    s3_server: Any, standin: Standin) -> TestClient[Any, Any]:
    """A gateway that streams blob bytes: from S3 by a routing rule, or from the registry."""
    if request.param == "stream-rule":
        return await gateway(routing=RoutingConfig(default="stream"))
    s3 = S3Config(bucket=BUCKET, endpoint_url=s3_server.endpoint_url)
    return await gateway(storage=StorageConfig(backend="proxy", s3=s3,
                                               proxy=storage_on_loopback(standin)))


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes={'0' * 3000}{HUGE[:2000]}-",
                                    f"bytes={HUGE[:4000]}-{HUGE[:4000]}"])
async def test_a_range_of_thousands_of_digits_is_a_well_formed_416(
    streaming: TestClient[Any, Any], signer: Signer, blob: tuple[str, bytes],
    caplog: pytest.LogCaptureFixture, header: str,
) -> None:
    with caplog.at_level(logging.INFO):
        answer = await exchange(streaming.port, "GET", f"/v2/library/a/blobs/{blob[0]}",
                                [*bearer(signer.token("library/a")), ("Range", header)])
    assert answer.status == 416
    assert answer.header("Content-Range") == f"bytes */{len(blob[1])}"
    no_errors_logged(caplog)


@pytest.mark.parametrize(("header", "first"), [(f"bytes=100-{HUGE}", 100),
                                             (f"bytes={'0' * 5000}100-", 100),
                                             (f"bytes=-{HUGE}", 0)])
async def test_huge_last_positions_and_suffixes_mean_to_the_end(
    streaming: TestClient[Any, Any], signer: Signer, blob: tuple[str, bytes], header: str,
    first: int,
) -> None:
    answer = await exchange(streaming.port, "GET", f"/v2/library/a/blobs/{blob[0]}",
                            [*bearer(signer.token("library/a")), ("Range", header)])
    size = len(blob[1])
    if first == 0:  # a suffix longer than the blob: all of it
        assert (answer.status, answer.header("Content-Range")) == (200, None)
    else:
        assert answer.status == 206
        assert answer.header("Content-Range") == f"bytes {first}-{size - 1}/{size}"
    assert answer.body == blob[1][first:]
