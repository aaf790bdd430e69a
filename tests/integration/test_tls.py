"""TLS on every hop, with certificates made at test time by a private CA: blobgate serving
HTTPS to curl, rotation picked up by the next connection (open ones kept), corrupt
replacements ignored, upstreams with private CAs and client certificates, and an HTTPS
S3 endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from blobgate.config import (
    ClientTLSConfig,
    RoutingConfig,
    S3Config,
    StorageConfig,
    UpstreamConfig,
)
from blobgate.devstack import s3 as devs3
from blobgate.devstack.gateway import GatewayProcess

from support.gateway import BUCKET, GatewayFactory
from support.pki import PKI
from support.standin import StandIn
from support.tokens import ISSUER, SERVICE, Signer

Standin = tuple[StandIn, Any]


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return PKI(tmp_path)


@pytest.fixture
def blob(put_blob: Any, standin: Standin) -> tuple[str, bytes]:
    data = os.urandom(50_000)
    digest = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data
    return digest, data


def https_config(pki: PKI, upstream: str, bundle: Path, s3: str) -> dict[str, Any]:
    cert, key = pki.issue("gateway", ("127.0.0.1", "localhost"))
    return {
        "server": {"tls": {"cert_file": str(cert), "key_file": str(key),
                           "reload_interval_s": 0.05}},
        "upstream": {"url": upstream},
        "auth": {"issuer": ISSUER, "service": SERVICE, "certificates": str(bundle)},
        "storage": {"s3": {"bucket": BUCKET, "endpoint_url": s3}},
    }


async def metrics_text(gateway: GatewayProcess) -> str:
    async with aiohttp.ClientSession() as session, session.get(
            f"{gateway.metrics_url()}/metrics") as response:
        return await response.text()


@pytest.fixture
def https_gateway(
    tmp_path: Path, pki: PKI, standin: Standin, bundle: Path, s3_server: Any
) -> Iterator[GatewayProcess]:
    config = https_config(pki, str(standin[1].make_url("")).rstrip("/"), bundle,
                          s3_server.endpoint_url)
    with GatewayProcess(tmp_path, config) as gateway:
        yield gateway
        assert gateway.stop() == 0


def replace(target: Path, source: Path) -> None:
    """Rewrite ``target`` in place with ``source``'s bytes, as cert-manager does."""
    target.write_bytes(source.read_bytes())


async def peer_certificate(port: int, ca: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return bytes(der)


async def test_curl_pulls_a_blob_over_https(
    https_gateway: GatewayProcess, pki: PKI, signer: Signer, blob: tuple[str, bytes],
    tmp_path: Path,
) -> None:
    digest, _ = blob
    out = tmp_path / "blob"
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-L", "--fail", "--cacert", str(pki.ca_path), "-o", str(out),
        "-w", "%{num_redirects}",
        "-H", f"Authorization: Bearer {signer.token('library/a')}",
        f"https://127.0.0.1:{https_gateway.port}/v2/library/a/blobs/{digest}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await curl.communicate()
    assert curl.returncode == 0, stderr
    assert stdout == b"1"  # one redirect, straight to S3
    assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == digest
    # Without the CA, curl refuses the server: nothing weakened on the way.
    refused = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-o", "/dev/null", f"https://127.0.0.1:{https_gateway.port}/v2/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await refused.communicate()
    assert refused.returncode == 60  # peer certificate cannot be authenticated


async def test_old_tls_versions_are_refused(https_gateway: GatewayProcess, pki: PKI) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with pytest.warns(DeprecationWarning, match="TLSv1"):  # deprecated: the very point
        context.minimum_version = ssl.TLSVersion.TLSv1
    with pytest.warns(DeprecationWarning, match="TLSv1_1"):
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        await asyncio.open_connection("127.0.0.1", https_gateway.port, ssl=context)


async def test_rotation_reaches_new_connections_and_corrupt_files_are_ignored(
    https_gateway: GatewayProcess, pki: PKI
) -> None:
    port, ca = https_gateway.port, pki.ca_path
    cert_file = Path(https_gateway.config["server"]["tls"]["cert_file"])
    key_file = Path(https_gateway.config["server"]["tls"]["key_file"])
    before = await peer_certificate(port, ca)
    context = ssl.create_default_context(cafile=str(ca))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)

    pki.issue("gateway-next", ("127.0.0.1",), file_name="next")
    replace(key_file, pki.directory / "next.key")
    replace(cert_file, pki.directory / "next.crt")
    for _ in range(200):
        rotated = await peer_certificate(port, ca)
        if rotated != before:
            break
        await asyncio.sleep(0.02)
    assert rotated != before
    # The connection opened before the rotation still works.
    writer.write(b"GET /v2/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 ")
    writer.close()

    corrupt = pki.directory / "corrupt.crt"
    corrupt.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n")
    replace(cert_file, corrupt)
    for _ in range(200):
        if 'blobgate_reload_healthy{file="server_tls"} 0.0' in await metrics_text(https_gateway):
            break
        await asyncio.sleep(0.02)
    assert await peer_certificate(port, ca) == rotated  # still serving the good pair


async def tls_standin(state: StandIn, pki: PKI, sans: tuple[str, ...], client_ca: Path | None
                      ) -> TestServer:
    cert, key = pki.issue("upstream-" + "-".join(sans), sans)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    server = TestServer(state.app(), scheme="https")
    await server.start_server(ssl=context)
    return server


async def test_upstream_with_private_ca_server_name_and_client_certificate(
    gateway: GatewayFactory, tmp_path: Path,
) -> None:
    registry_ca, stranger_ca = PKI(tmp_path / "registry"), PKI(tmp_path / "stranger")
    client_cert, client_key = registry_ca.issue("blobgate-client")
    state = StandIn()
    server = await tls_standin(state, registry_ca, ("registry.internal",), registry_ca.ca_path)
    url = f"https://127.0.0.1:{server.port}"

    async def status(tls: ClientTLSConfig) -> tuple[int, dict[str, Any]]:
        client = await gateway(upstream=UpstreamConfig(url=url, timeout_s=5, tls=tls))
        response = await client.get("/v2/", headers={"Authorization": "Bearer x"})
        body = await response.json()
        return response.status, body

    try:
        trusted = ClientTLSConfig(ca_file=str(registry_ca.ca_path), server_name="registry.internal",
                                  client_cert_file=str(client_cert),
                                  client_key_file=str(client_key))
        assert (await status(trusted))[0] == 200
        unknown_ca, body = await status(ClientTLSConfig(
            ca_file=str(stranger_ca.ca_path), server_name="registry.internal",
            client_cert_file=str(client_cert), client_key_file=str(client_key)))
        assert unknown_ca == 502
        assert "certificate is not trusted" in body["errors"][0]["message"]
        wrong_name, _ = await status(ClientTLSConfig(
            ca_file=str(registry_ca.ca_path), client_cert_file=str(client_cert),
            client_key_file=str(client_key)))
        assert wrong_name == 502  # the certificate is for registry.internal, not 127.0.0.1
        no_client_cert, _ = await status(ClientTLSConfig(
            ca_file=str(registry_ca.ca_path), server_name="registry.internal"))
        assert no_client_cert == 502
        assert (await status(ClientTLSConfig(verify=False, client_cert_file=str(client_cert),
                                             client_key_file=str(client_key))))[0] == 200
    finally:
        await server.close()


async def test_https_s3_endpoint_with_private_ca(
    gateway: GatewayFactory, tmp_path: Path, signer: Signer, standin: Standin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    pki = PKI(tmp_path)
    cert, key = pki.issue("s3", ("localhost", "127.0.0.1"))
    with devs3.S3Server(tmp_path, tls=(cert, key, pki.ca_path)) as s3:
        s3.client().create_bucket(Bucket=BUCKET)
        data = os.urandom(20_000)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        s3.client().put_object(Bucket=BUCKET, Key="docker/registry/v2/blobs/sha256/"
                               f"{digest[7:9]}/{digest[7:]}/data", Body=data)
        standin[0].blobs[("library/a", digest)] = b"from the registry"
        headers = {"Authorization": f"Bearer {signer.token('library/a')}"}
        path = f"/v2/library/a/blobs/{digest}"
        trusting = await gateway(routing=RoutingConfig(default="stream"), storage=StorageConfig(
            s3=S3Config(bucket=BUCKET, endpoint_url=s3.endpoint_url, ca_file=str(pki.ca_path))))
        assert await (await trusting.get(path, headers=headers)).read() == data
        default = await gateway(routing=RoutingConfig(default="stream"), storage=StorageConfig(
            s3=S3Config(bucket=BUCKET, endpoint_url=s3.endpoint_url)))
        # The private CA is not trusted by default: S3 is refused, the registry serves.
        assert await (await default.get(path, headers=headers)).read() == b"from the registry"
