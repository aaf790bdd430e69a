"""Blob GET/HEAD through blobgate with a real S3 server (moto over HTTP).

The presigned Location is fetched with no Authorization and must return exactly the
blob; its SigV4 signature is recomputed independently for GET on the public host.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from blobgate.config import S3Config, StorageConfig
from blobgate.devstack.s3 import SECRET_KEY, S3Server

from support import sigv4
from support.gateway import BUCKET, GatewayFactory
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def blob(put_blob: Any, standin: Standin) -> tuple[str, bytes]:
    data = os.urandom(300_000)
    digest = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data
    return digest, data


async def fetch_plain(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        assert "Authorization" not in response.request_info.headers
        return await response.read()


async def test_get_redirects_to_a_url_serving_exactly_the_blob(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], s3_server: S3Server
) -> None:
    digest, data = blob
    client = await gateway()
    response = await client.get(f"/v2/library/a/blobs/{digest}",
                                headers=bearer(signer.token("library/a")), allow_redirects=False)
    assert response.status == 307
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert await response.read() == b""
    location = response.headers["Location"]
    assert urlsplit(location).netloc == urlsplit(s3_server.endpoint_url).netloc
    body = await fetch_plain(location)
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    assert body == data


async def test_signature_is_valid_for_get_on_the_public_host_only(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], s3_server: S3Server
) -> None:
    port = urlsplit(s3_server.endpoint_url).port
    public = f"http://public-s3.localhost:{port}"
    s3 = S3Config(bucket=BUCKET, endpoint_url=f"http://127.0.0.1:{port}",
                  public_endpoint_url=public, expires_s=900)
    client = await gateway(storage=StorageConfig(s3=s3))
    digest, _ = blob
    response = await client.get(f"/v2/library/a/blobs/{digest}",
                                headers=bearer(signer.token("library/a")), allow_redirects=False)
    location = response.headers["Location"]
    assert location.startswith(f"{public}/{BUCKET}/docker/registry/v2/blobs/sha256/")
    assert "X-Amz-Expires=900" in location
    assert sigv4.signature(location) == sigv4.expected_signature(location, SECRET_KEY, "GET")
    assert sigv4.signature(location) != sigv4.expected_signature(location, SECRET_KEY, "HEAD")
    internal = location.replace(public, f"http://127.0.0.1:{port}")
    assert sigv4.signature(internal) != sigv4.expected_signature(internal, SECRET_KEY, "GET")


@pytest.mark.parametrize(
    "head_redirects", [True, False], ids=["size-from-s3", "size-from-upstream"]
)
async def test_head_is_answered_locally_without_a_url(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], standin: Standin,
    head_redirects: bool,
) -> None:
    standin[0].head_redirects = head_redirects
    digest, data = blob
    client = await gateway()
    response = await client.head(f"/v2/library/a/blobs/{digest}",
                                 headers=bearer(signer.token("library/a")), allow_redirects=False)
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "Location" not in response.headers
    assert standin[0].count("GET", f"/v2/library/a/blobs/{digest}") == 0


async def test_membership_and_urls_are_cached(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], standin: Standin
) -> None:
    digest, _ = blob
    client = await gateway()
    path = f"/v2/library/a/blobs/{digest}"
    token = signer.token("library/a")
    locations = set()
    for _ in range(5):
        response = await client.get(path, headers=bearer(token), allow_redirects=False)
        assert response.status == 307
        locations.add(response.headers["Location"])
    assert len(locations) == 1
    assert standin[0].count("HEAD", path) == 1
    # Another token is confirmed with the registry once (one HEAD), then served from cache.
    other = signer.token("library/a")
    for _ in range(3):
        response = await client.get(path, headers=bearer(other), allow_redirects=False)
        assert response.headers["Location"] in locations
    assert standin[0].count("HEAD", path) == 2


NEGATIVE = {
    "no-token": lambda s: {},
    "expired": lambda s: bearer(s.token("library/a", exp=int(time.time()) - 600)),
    "wrong-aud": lambda s: bearer(s.token("library/a", aud="elsewhere")),
    "wrong-iss": lambda s: bearer(s.token("library/a", iss="elsewhere")),
    "other-repo": lambda s: bearer(s.token("library/b")),
    "push-only": lambda s: bearer(s.token(access=[
        {"type": "repository", "name": "library/a", "actions": ["push"]}])),
    "alg-none": lambda s: bearer(
        "eyJhbGciOiJub25lIn0." + s.token("library/a").split(".")[1] + "."),
    "stranger": lambda s: bearer(Signer(name="stranger").token("library/a")),
    "basic": lambda s: {"Authorization": "Basic YWxpY2U6cHc="},
}


@pytest.mark.parametrize("case", list(NEGATIVE))
async def test_bad_credentials_never_redirect(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], standin: Standin, case: str
) -> None:
    digest, _ = blob
    client = await gateway()
    headers = NEGATIVE[case](signer)
    response = await client.get(f"/v2/library/a/blobs/{digest}", headers=headers,
                                allow_redirects=False)
    assert response.status != 307
    assert "Location" not in response.headers
    # The registry answered (passed through): its own status and body reached the client.
    assert standin[0].count("GET", f"/v2/library/a/blobs/{digest}") == 1
    expected = 401 if case in ("no-token", "basic") else 200
    assert response.status == expected
    if expected == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")


@pytest.mark.parametrize("name", ["library/ab", "library/a/b"])
async def test_token_for_a_does_not_open_prefixed_names(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], standin: Standin, name: str
) -> None:
    digest, data = blob
    standin[0].blobs[(name, digest)] = data
    client = await gateway()
    response = await client.get(f"/v2/{name}/blobs/{digest}",
                                headers=bearer(signer.token("library/a")), allow_redirects=False)
    assert response.status == 200  # served by the registry, which checks the token itself
    assert "Location" not in response.headers
    assert standin[0].count("HEAD", f"/v2/{name}/blobs/{digest}") == 0


async def test_blob_of_another_repository_is_not_served(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], standin: Standin
) -> None:
    digest, _ = blob  # lives in library/a only
    client = await gateway()
    response = await client.get(f"/v2/library/b/blobs/{digest}",
                                headers=bearer(signer.token("library/b")), allow_redirects=False)
    assert response.status == 404
    assert (await response.json())["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    ("path", "code"),
    [("/v2/Library/a/blobs/sha256:" + "a" * 64, "NAME_INVALID"),
     ("/v2/library%2Fa/blobs/sha256:" + "a" * 64, "NAME_INVALID"),
     ("/v2/library/a/blobs/sha256:" + "A" * 64, "DIGEST_INVALID"),
     ("/v2/library/a/blobs/md5:" + "a" * 32, "DIGEST_INVALID")],
)
async def test_malformed_blob_paths_get_oci_errors(
    gateway: GatewayFactory, signer: Signer, path: str, code: str
) -> None:
    client = await gateway()
    response = await client.get(path, headers=bearer(signer.token("library/a")),
                                allow_redirects=False)
    assert response.status == 400
    assert (await response.json())["errors"][0]["code"] == code


async def test_presign_host_under_the_gateway_host_is_not_redirected(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], s3_server: S3Server,
    standin: Standin,
) -> None:
    port = urlsplit(s3_server.endpoint_url).port
    s3 = S3Config(bucket=BUCKET, endpoint_url=f"http://s3.gateway.example:{port}")
    client = await gateway(storage=StorageConfig(s3=s3))
    digest, _ = blob
    response = await client.get(
        f"/v2/library/a/blobs/{digest}", allow_redirects=False,
        headers={**bearer(signer.token("library/a")), "Host": "gateway.example"},
    )
    assert response.status == 200  # the registry served it; no URL to a host under ours
    assert "Location" not in response.headers


async def test_presign_failure_falls_back_to_the_registry(
    gateway: GatewayFactory, signer: Signer, blob: tuple[str, bytes], monkeypatch: Any,
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = await gateway()
    digest, data = blob
    response = await client.get(f"/v2/library/a/blobs/{digest}",
                                headers=bearer(signer.token("library/a")), allow_redirects=False)
    assert response.status == 200
    assert await response.read() == data


async def test_rootdirectory_is_part_of_the_key(
    gateway: GatewayFactory, signer: Signer, put_blob: Any, standin: Standin, s3_server: S3Server
) -> None:
    data = os.urandom(1000)
    digest = put_blob(data, "/nested/root")
    standin[0].blobs[("library/a", digest)] = data
    s3 = replace(S3Config(bucket=BUCKET, endpoint_url=s3_server.endpoint_url),
                 rootdirectory="/nested/root")
    client = await gateway(storage=StorageConfig(s3=s3))
    response = await client.get(f"/v2/library/a/blobs/{digest}",
                                headers=bearer(signer.token("library/a")), allow_redirects=False)
    assert "/nested/root/docker/registry/v2/blobs/" in response.headers["Location"]
    assert await fetch_plain(response.headers["Location"]) == data
