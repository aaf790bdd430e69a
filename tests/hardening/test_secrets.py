"""Secrets never leave through logs, error bodies or metrics.

A real ``blobgate serve`` process at log level ``debug`` (so every library's debug
output is on, as an operator chasing a problem would run it) handles redirects, URL-API
requests, denied and malformed requests carrying tokens, upstream failures, and two
PostgreSQL DSNs with passwords at addresses where no database answers. Afterwards its
whole stderr, blobgate's own error bodies and ``/metrics`` are searched for every token
(and its signature part), both passwords, the AWS secret key and every URL signature.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from blobgate.devstack.logs import json_objects
from blobgate.devstack.procs import free_port
from blobgate.devstack.s3 import SECRET_KEY, S3Server
from hardening.served import ServedGateway
from hardening.wire import send

from support.standin import StandIn
from support.tokens import Signer

AUDIT_PASSWORD = "audit-Pa55word-7f3c"
HARBOR_PASSWORD = "harbor-Pa55word-91ab"


@pytest.fixture
async def standin_url() -> AsyncIterator[tuple[StandIn, str]]:
    state = StandIn()
    server = TestServer(state.app())
    await server.start_server()
    yield state, str(server.make_url("")).rstrip("/")
    await server.close()


def signatures_in(text: str) -> list[str]:
    return [value for url in [text] for key, value in parse_qsl(urlsplit(url).query)
            if key == "X-Amz-Signature"]


@pytest.mark.timeout(120)
async def test_no_secret_in_logs_error_bodies_or_metrics(
    standin_url: tuple[StandIn, str], s3_server: S3Server, put_blob: Callable[..., str],
    bundle: Path, signer: Signer, tmp_path: Path,
) -> None:
    state, upstream_url = standin_url
    data = b"layer bytes " * 500
    digest = put_blob(data)
    state.blobs[("library/a", digest)] = data
    dead = free_port()
    served = await asyncio.to_thread(
        ServedGateway, tmp_path / "gw", upstream_url, bundle, s3_server.endpoint_url,
        log={"level": "debug", "access_log": True},
        upstream={"url": upstream_url, "timeout_s": 1},
        audit={"sink": "postgres", "flush_interval_s": 0.05,
               "dsn": f"postgresql://blobgate:{AUDIT_PASSWORD}@127.0.0.1:{dead}/audit"},
        membership={"source": "harbor_db",
                    "dsn": f"postgresql://harbor:{HARBOR_PASSWORD}@127.0.0.1:{dead}/registry"},
    )
    tokens = {
        "valid": signer.token("library/a"),
        "other-repo": signer.token("library/b"),
        "expired": signer.token("library/a", exp=int(time.time()) - 3600),
        "stranger": Signer(name="stranger").token("library/a"),
    }
    tampered = tokens["valid"][:-6] + "AAAAAA"
    tokens["tampered"] = tampered
    signatures: list[str] = []
    own_error_bodies: list[bytes] = []
    blob = f"{served.url}/v2/library/a/blobs/{digest}"
    try:
        async with aiohttp.ClientSession() as session:

            async def call(method: str, url: str, token: str | None = None,
                           **kwargs: object) -> aiohttp.ClientResponse:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with session.request(method, url, headers=headers,
                                           allow_redirects=False, **kwargs) as response:
                    body = await response.read()
                    signatures.extend(signatures_in(response.headers.get("Location", "")))
                    if response.content_type == "application/json" and b'"url"' in body:
                        for entry in [json.loads(body), *json.loads(body).get("urls", [])]:
                            signatures.extend(signatures_in(entry.get("url", "")))
                    # Every request here carries a Bearer token, so the stand-in never
                    # answers with an error: each 4xx/5xx is one blobgate rendered itself.
                    if response.status >= 400:
                        own_error_bodies.append(body)
                    return response

            for _ in range(3):
                assert (await call("GET", blob, tokens["valid"])).status == 307
            assert (await call("HEAD", blob, tokens["valid"])).status == 200
            api = f"{served.url}/api/v1/blobs/{digest}/url?repository=library/a"
            assert (await call("GET", api, tokens["valid"])).status == 200
            assert (await call("POST", f"{served.url}/api/v1/blobs/urls", tokens["valid"],
                               json={"repository": "library/a", "digests": [digest]})
                    ).status == 200
            for name in ("other-repo", "expired", "stranger", "tampered"):
                assert (await call("GET", blob, tokens[name])).status != 307
                assert (await call("GET", api, tokens[name])).status == 401
            await call("GET", f"{served.url}/v2/Bad/blobs/{digest}", tokens["valid"])
            await call("GET", f"{served.url}/slow", tokens["valid"])  # 504 after 1 s
            with pytest.raises(aiohttp.ClientPayloadError):
                await call("GET", f"{served.url}/broken", tokens["valid"])
        assert signatures, "no presigned URL was handed out"
        # Requests aiohttp's parser refuses, with secrets in the parts it echoes into its log.
        for raw in (
            f"GET /v2/?token={tokens['valid']}&X-Amz-Signature={signatures[0]} HTTP/9.9\r\n"
            f"Host: x\r\nAuthorization: Bearer {tokens['valid']}\r\n\r\n",
            f"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tokens['valid']}"
            f"{'=' * 9000}\r\n\r\n",
        ):
            await send(served.port, raw.encode())
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{served.metrics_url()}/metrics") as response:
                metrics = await response.text()
            async with session.get(f"{served.metrics_url()}/readyz") as response:
                readyz = await response.text()
        await asyncio.sleep(0.5)  # let the audit writer try (and fail) a few times
        served.terminate()
        assert await asyncio.to_thread(served.wait, 30) == 0
    finally:
        await asyncio.to_thread(served.process.stop)

    logs = served.log_text()
    entries = json_objects(logs)
    assert len(entries) == len(logs.splitlines())  # every line is one JSON object
    assert {"debug", "info"} <= {e["level"] for e in entries}  # debug output really was on
    assert {"blobgate.access", "blobgate.audit"} <= {e["logger"] for e in entries}
    assert "<redacted>" in logs  # secrets did reach the log pipeline, and were scrubbed
    assert "harbor_db" in metrics or "database_unavailable" in metrics  # the DSNs were used
    assert own_error_bodies, "no error answered by blobgate itself"
    secrets = {
        **{f"token {k}": v for k, v in tokens.items()},
        **{f"token signature {k}": v.split(".")[2] for k, v in tokens.items()},
        "audit password": AUDIT_PASSWORD,
        "harbor password": HARBOR_PASSWORD,
        "AWS secret key": SECRET_KEY,
        **{f"X-Amz-Signature {i}": s for i, s in enumerate(signatures)},
    }
    places = {"logs": logs, "metrics": metrics, "readyz": readyz,
              "error bodies": b"\n".join(own_error_bodies).decode(errors="replace")}
    leaks = [f"{what} in {where}" for what, secret in secrets.items()
             for where, text in places.items() if secret in text]
    assert leaks == []
