"""Faults around the gateway: a registry that is down, slow, resetting or talking nonsense;
a Harbor database that vanishes or hangs; token certificates replaced by garbage; an S3
endpoint that is down. Every request must complete (bounded by a generous
``asyncio.wait_for``) with OCI error JSON or a fallback, never hang or crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from blobgate.config import (
    AuthConfig,
    MembershipConfig,
    RoutingConfig,
    S3Config,
    StorageConfig,
    UpstreamConfig,
)
from blobgate.devstack.procs import free_port
from hardening.wire import Answer, bearer, exchange

from support.eventually import eventually
from support.gateway import BUCKET, GatewayFactory, Scrape
from support.standin import StandIn
from support.tcpproxy import TCPProxy
from support.tokens import ISSUER, SERVICE, Signer, pem

Standin = tuple[StandIn, Any]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMIT_S = 20.0  # generous: a request that needs this long is hanging, not slow
SCHEMA = Path(__file__).parents[1] / "support" / "harbor_schema.sql"


@asynccontextmanager
async def tcp_upstream(handler: Handler) -> AsyncIterator[str]:
    """A raw TCP server on loopback running ``handler`` per connection; yields its URL."""
    writers: set[asyncio.StreamWriter] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await handler(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        await server.wait_closed()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashing peer or a middlebox would."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def read_head(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")


async def blackhole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):
        pass


async def reset_on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    reset(writer)


async def reset_after_request(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    reset(writer)


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\r\n\r\n")
    await writer.drain()
    writer.close()


async def stall_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
    await writer.drain()
    await asyncio.sleep(3600)


async def bounded(call: Awaitable[Answer]) -> Answer:
    return await asyncio.wait_for(call, LIMIT_S)


def assert_oci(answer: Answer, status: int) -> None:
    assert answer.status == status, answer.body
    assert (answer.header("Content-Type") or "").startswith("application/json")
    assert json.loads(answer.body)["errors"][0]["code"] == "UNAVAILABLE"
    assert answer.header("Location") is None


async def gateway_before(gateway: GatewayFactory, url: str) -> TestClient[Any, Any]:
    return await gateway(upstream=UpstreamConfig(url=url, timeout_s=0.5, connect_timeout_s=0.5))


# -- the registry ------------------------------------------------------------------------------


async def test_upstream_down_is_a_quick_502(gateway: GatewayFactory, signer: Signer) -> None:
    client = await gateway_before(gateway, f"http://127.0.0.1:{free_port()}")
    digest = "sha256:" + "ab" * 32
    started = time.monotonic()
    assert_oci(await bounded(exchange(client.port, "GET", "/v2/")), 502)
    for method in ("GET", "HEAD"):
        answer = await bounded(exchange(client.port, method, f"/v2/library/a/blobs/{digest}",
                                        bearer(signer.token("library/a"))))
        assert answer.status == 502
        assert answer.header("Location") is None
    # Connection refused is answered at once, or after the one retry of a GET/HEAD.
    assert time.monotonic() - started < LIMIT_S


async def test_a_registry_restarting_gets_a_get_asked_once_more(
    gateway: GatewayFactory, standin: Standin, caplog: pytest.LogCaptureFixture,
) -> None:
    """A rolling restart of the registry: the first try is refused, the second (a second
    later) reaches it. A request with a body is never sent twice."""
    target = urlsplit(str(standin[1].make_url("")))
    proxy = TCPProxy(target.hostname or "127.0.0.1", target.port or 80)
    await proxy.start()
    await proxy.cut()  # the registry is down...
    client = await gateway_before(gateway, f"http://127.0.0.1:{proxy.port}")
    with caplog.at_level("INFO", logger="blobgate.registry.proxy"):
        answer = asyncio.create_task(bounded(exchange(client.port, "GET", "/v2/")))

        async def refused_once() -> bool:
            return "asking once more" in caplog.text
        await eventually(refused_once)
        await proxy.start()  # ...and back before the retry
        assert (await answer).status == 401  # the registry's own challenge, not a 502
        await proxy.cut()
        put = await bounded(exchange(client.port, "PUT", "/v2/a/manifests/latest",
                                     [("Content-Length", "0")]))
    assert_oci(put, 502)  # not retried: it has a body that may have taken effect
    assert caplog.text.count("asking once more") == 1


@pytest.mark.parametrize(
    ("handler", "status"),
    [(blackhole, 504), (reset_on_accept, 502), (reset_after_request, 502), (garbage, 502)],
    ids=["silent", "reset-on-accept", "reset-after-request", "not-http"],
)
async def test_broken_upstreams_give_oci_errors(
    gateway: GatewayFactory, signer: Signer, handler: Handler, status: int
) -> None:
    async with tcp_upstream(handler) as url:
        client = await gateway_before(gateway, url)
        assert_oci(await bounded(exchange(client.port, "GET", "/v2/")), status)
        assert_oci(await bounded(exchange(client.port, "PUT", "/v2/a/manifests/latest",
                                          [("Content-Length", "0")])), status)
        digest = "sha256:" + "cd" * 32
        answer = await bounded(exchange(client.port, "GET", f"/v2/library/a/blobs/{digest}",
                                        bearer(signer.token("library/a"))))
        assert_oci(answer, status)  # the membership check itself failed
        # And the gateway is still healthy for the next client.
        assert_oci(await bounded(exchange(client.port, "GET", "/v2/")), status)


async def test_upstream_stalling_mid_body_cuts_the_client_off(gateway: GatewayFactory) -> None:
    async with tcp_upstream(stall_mid_body) as url:
        client = await gateway_before(gateway, url)
        started = time.monotonic()
        data = await asyncio.wait_for(
            _raw_get(client.port, "/v2/library/a/blobs/uploads/x"), LIMIT_S)
        # Headers and the first bytes were relayed, then the connection was cut (not hung).
        assert data.startswith(b"HTTP/1.1 200 OK")
        assert len(data) < 1_000_000
        assert time.monotonic() - started < LIMIT_S


async def _raw_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    received = bytearray()
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            received += chunk
    writer.close()
    return bytes(received)


async def test_warm_blobs_keep_redirecting_while_the_registry_is_gone(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], standin: Standin,
) -> None:
    port = standin[1].port
    proxy = TCPProxy("127.0.0.1", port)
    await proxy.start()
    client = await gateway_before(gateway, f"http://127.0.0.1:{proxy.port}")
    path = f"/v2/library/a/blobs/{blob[0]}"
    token = bearer(signer.token("library/a"))
    assert (await exchange(client.port, "GET", path, token)).status == 307
    await proxy.cut()
    # The registry accepted this token, membership and URL are cached: the pull still works.
    again = await bounded(exchange(client.port, "GET", path, token))
    assert again.status == 307
    # A token the registry has never accepted is not vouched for while it cannot be asked:
    # the client hears the registry's absence (a clean 502), as for anything else.
    assert_oci(await bounded(exchange(client.port, "GET", path,
                                      bearer(signer.token("library/a")))), 502)
    assert_oci(await bounded(exchange(client.port, "GET", "/v2/")), 502)


# -- the Harbor database ------------------------------------------------------------------------


async def test_database_that_hangs_falls_back_to_the_registry(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], scrape: Scrape,
) -> None:
    """A database host that accepts connections and then says nothing (a hung server,
    a blackholing firewall): the pull still succeeds through the upstream check."""
    async with tcp_upstream(blackhole) as url:
        dsn = f"postgresql://harbor:secret@{urlsplit(url).netloc}/registry"
        client = await gateway(membership=MembershipConfig(source="harbor_db", dsn=dsn))
        path = f"/v2/library/a/blobs/{blob[0]}"
        first = await bounded(exchange(client.port, "GET", path,
                                       bearer(signer.token("library/a"))))
        assert first.status == 307
        # The next blob check does not wait for the database again (refused for a while).
        started = time.monotonic()
        second = await bounded(exchange(client.port, "HEAD", path,
                                        bearer(signer.token("library/a"))))
        assert second.status == 200
        assert time.monotonic() - started < 2.0
        metrics = await scrape(client)
        assert metrics['blobgate_fallbacks_total{reason="database_unavailable"}'] >= 1


async def test_database_lost_mid_run_falls_back_to_the_registry(
    gateway: GatewayFactory, signer: Signer, put_blob: Any, standin: Standin, pg_dsn: str,
    scrape: Scrape,
) -> None:
    data1, data2 = os.urandom(1000), os.urandom(1000)
    d1, d2 = put_blob(data1), put_blob(data2)
    standin[0].blobs[("proj/app", d2)] = data2  # only the registry knows d2
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(SCHEMA.read_text())
        await conn.execute("TRUNCATE project, repository, blob, project_blob, artifact, "
                           "artifact_blob")
        await conn.execute(
            "INSERT INTO project (project_id, owner_id, name, deleted) "
            "VALUES (1, 1, 'proj', false);"
            "INSERT INTO repository (repository_id, name, project_id) VALUES (1, 'proj/app', 1);"
            "INSERT INTO artifact (type, media_type, manifest_media_type, artifact_type, "
            "project_id, repository_id, repository_name, digest) "
            "VALUES ('IMAGE', 'm', 'm', 'm', 1, 1, 'proj/app', 'm1')")
        await conn.execute("INSERT INTO blob (digest, content_type, size, status) "
                           "VALUES ($1, 'b', 1000, 'none')", d1)
        await conn.execute("INSERT INTO artifact_blob (digest_af, digest_blob) VALUES ('m1', $1)",
                           d1)
    finally:
        await conn.close()
    target = urlsplit(pg_dsn)
    proxy = TCPProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    dsn = pg_dsn.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    client = await gateway(membership=MembershipConfig(source="harbor_db", dsn=dsn))
    token = signer.token("proj/app")
    assert (await exchange(client.port, "GET", f"/v2/proj/app/blobs/{d1}", bearer(token))
            ).status == 307
    assert standin[0].requests == []  # answered from the database
    await proxy.cut()
    answer = await bounded(exchange(client.port, "GET", f"/v2/proj/app/blobs/{d2}",
                                    bearer(token)))
    assert answer.status == 307  # the upstream HEAD answered instead
    assert standin[0].count("HEAD", f"/v2/proj/app/blobs/{d2}") == 1
    metrics = await scrape(client)
    assert metrics['blobgate_fallbacks_total{reason="database_unavailable"}'] == 1


# -- token certificates -------------------------------------------------------------------------


def ed25519_certificate_pem() -> bytes:
    """A well-formed certificate whose key type blobgate does not support."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed25519")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, None))
    return pem(cert)


async def test_certificates_replaced_by_garbage_keep_the_old_keys(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], tmp_path: Path,
    scrape: Scrape,
) -> None:
    bundle = tmp_path / "token.crt"
    bundle.write_bytes(pem(signer.cert))
    client = await gateway(auth=AuthConfig(issuer=ISSUER, service=SERVICE,
                                           certificates=str(bundle), reload_interval_s=0.02))
    path = f"/v2/library/a/blobs/{blob[0]}"

    async def redirected() -> bool:
        answer = await exchange(client.port, "GET", path, bearer(signer.token("library/a")))
        return answer.status == 307

    assert await redirected()
    errors = 'blobgate_reloads_total{file="token_certificates",result="error"}'
    replacements = {
        "garbage-pem": b"-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n",
        "empty": b"",
        "binary": os.urandom(4096),
        "truncated": pem(signer.cert)[: len(pem(signer.cert)) // 2],
        "unsupported-key-type": ed25519_certificate_pem(),
    }
    for count, (case, content) in enumerate(replacements.items(), start=1):
        bundle.write_bytes(content)
        for _ in range(250):
            metrics = await scrape(client)
            if metrics.get(errors, 0) == count:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"{case}: the bad file was never noticed")
        assert metrics['blobgate_reload_healthy{file="token_certificates"}'] == 0, case
        assert await redirected(), f"{case}: old keys were dropped"
    bundle.unlink()  # a missing file (mid-swap) is not a reload at all
    await asyncio.sleep(0.2)
    assert await redirected()
    bundle.write_bytes(pem(signer.cert))
    for _ in range(250):
        if (await scrape(client)).get('blobgate_reload_healthy{file="token_certificates"}') == 1:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("a good file did not restore health")
    assert await redirected()


# -- S3 ----------------------------------------------------------------------------------------


async def test_s3_endpoint_down_never_gives_a_5xx(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], standin: Standin,
    scrape: Scrape,
) -> None:
    """Before a digest's first redirect blobgate looks the object up in S3; with S3 down
    it cannot, so it redirects nowhere and the registry answers (never a redirect on
    faith). Where blobgate itself needs S3 (the size for a HEAD or a streamed GET) it
    falls back to the registry too. Never a 5xx."""
    dead = f"http://localhost:{free_port()}"  # not the gateway's host: redirects allowed
    client = await gateway(storage=StorageConfig(s3=S3Config(bucket=BUCKET, endpoint_url=dead)))
    path = f"/v2/library/a/blobs/{blob[0]}"
    token = signer.token("library/a")
    get = await bounded(exchange(client.port, "GET", path, bearer(token)))
    assert get.status == 200  # the registry's own answer, with the bytes
    assert get.body == blob[1]
    assert get.header("Location") is None
    # The stand-in answered membership with a storage redirect (no size): the HEAD needs
    # the size from S3, cannot get it, and is passed through: the registry's own answer.
    head = await bounded(exchange(client.port, "HEAD", path, bearer(token)))
    assert head.status < 500
    assert (head.header("Location") or "").find(dead) == -1
    assert standin[0].count("HEAD", path) == 2  # membership, then the HEAD passed through
    metrics = await scrape(client)
    assert metrics['blobgate_fallbacks_total{reason="storage_unchecked"}'] == 1
    assert metrics['blobgate_fallbacks_total{reason="size_unknown"}'] == 1


async def test_s3_endpoint_down_url_api_is_not_a_500(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes],
) -> None:
    dead = f"http://localhost:{free_port()}"
    client = await gateway(storage=StorageConfig(s3=S3Config(bucket=BUCKET, endpoint_url=dead)))
    answer = await bounded(exchange(
        client.port, "GET", f"/api/v1/blobs/{blob[0]}/url?repository=library/a",
        bearer(signer.token("library/a"))))
    assert answer.status < 500 or (
        answer.header("Content-Type") or "").startswith("application/json")


async def test_s3_endpoint_down_streamed_blobs_come_from_the_registry(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], standin: Standin,
) -> None:
    dead = f"http://localhost:{free_port()}"
    client = await gateway(storage=StorageConfig(s3=S3Config(bucket=BUCKET, endpoint_url=dead)),
                           routing=RoutingConfig(default="stream"))
    path = f"/v2/library/a/blobs/{blob[0]}"
    answer = await bounded(exchange(client.port, "GET", path, bearer(signer.token("library/a"))))
    assert answer.status == 200
    assert answer.body == blob[1]
    assert standin[0].count("GET", path) == 1  # the registry served the bytes
