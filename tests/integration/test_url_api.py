"""The presigned-URL API against a real S3 server (moto over HTTP), CloudFront-signed
redirects checked with the public key, and cache invalidation on DELETE."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from blobgate.config import (
    AuthConfig,
    CDNConfig,
    RoutingConfig,
    S3Config,
    StorageConfig,
)
from blobgate.devstack.s3 import ACCESS_KEY, SECRET_KEY, S3Server

from support import sigv4
from support.cloudfront import split, verify
from support.gateway import BUCKET, GatewayFactory
from support.lines import Lines
from support.standin import StandIn
from support.tokens import ISSUER, SERVICE, Signer

Standin = tuple[StandIn, Any]
WEEK = 7 * 24 * 3600


def heads(s3_server: S3Server, digest: str) -> list[str]:
    """The HEAD requests of ``digest``'s object that reached S3."""
    return [r.target for r in s3_server.requests()
            if r.method == "HEAD" and digest.removeprefix("sha256:") in r.target]


@pytest.fixture
def blobs(put_blob: Any, standin: Standin) -> dict[str, bytes]:
    found = {}
    for _ in range(3):
        data = os.urandom(2000)
        digest = put_blob(data)
        standin[0].blobs[("library/a", digest)] = data
        found[digest] = data
    return found


def bearer(signer: Signer, name: str = "library/a") -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token(name)}"}


async def download(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_url_downloads_the_blob(
    gateway: GatewayFactory, signer: Signer, blobs: dict[str, bytes]
) -> None:
    client = await gateway()
    digest, data = next(iter(blobs.items()))
    response = await client.get(f"/api/v1/blobs/{digest}/url",
                                params={"repository": "library/a", "expires_in": "600",
                                        "filename": "layer.tar.gz", "cache_control": "no-cache"},
                                headers=bearer(signer))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["digest"] == digest
    assert body["size"] == len(data)
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert abs((expires_at - datetime.now(UTC)).total_seconds() - 600) < 5
    query = dict(parse_qsl(urlsplit(body["url"]).query))
    assert query["X-Amz-Expires"] == "600"
    assert query["response-content-disposition"] == 'attachment; filename="layer.tar.gz"'
    assert query["response-cache-control"] == "no-cache"
    assert sigv4.signature(body["url"]) == sigv4.expected_signature(body["url"], SECRET_KEY, "GET")
    assert hashlib.sha256(await download(body["url"])).hexdigest() == digest.split(":")[1]


@pytest.mark.parametrize("value", ["0", "-1", "abc", str(WEEK + 1), "1.5", "", "99999999999"])
async def test_bad_expires_in_is_a_400_saying_the_range(
    gateway: GatewayFactory, signer: Signer, blobs: dict[str, bytes], value: str
) -> None:
    client = await gateway()
    response = await client.get(f"/api/v1/blobs/{next(iter(blobs))}/url",
                                params={"repository": "library/a", "expires_in": value},
                                headers=bearer(signer))
    assert response.status == 400
    error = (await response.json())["errors"][0]
    assert error["code"] == "PARAMETER_INVALID"
    assert f"from 1 to {WEEK}" in error["message"]


async def test_expires_in_beyond_the_credentials_is_refused(
    gateway: GatewayFactory, signer: Signer, blobs: dict[str, bytes], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Temporary credentials from the standard chain (credential_process, as STS returns)."""
    expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    creds = json.dumps({"Version": 1, "AccessKeyId": ACCESS_KEY, "SecretAccessKey": SECRET_KEY,
                        "SessionToken": "session-token", "Expiration": expiry})
    script = tmp_path / "creds.py"
    script.write_text(f"print({creds!r})\n")
    (tmp_path / "config").write_text(f"[default]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    client = await gateway()
    path = f"/api/v1/blobs/{next(iter(blobs))}/url"

    async def ask(expires: str) -> aiohttp.ClientResponse:
        return await client.get(path, params={"repository": "library/a", "expires_in": expires},
                                headers=bearer(signer))

    assert (await ask("1800")).status == 200  # warms the credentials
    refused = await ask("7200")
    assert refused.status == 400
    message = (await refused.json())["errors"][0]["message"]
    limit = int(message.rsplit(" ", 1)[1])
    assert 3000 < limit <= 3600  # the credentials' remaining life, not SigV4's 7 days
    allowed = await (await ask("1800")).json()
    assert "X-Amz-Security-Token=session-token" in allowed["url"]


async def test_missing_token_gets_our_challenge_and_non_members_404(
    gateway: GatewayFactory, signer: Signer, blobs: dict[str, bytes], s3_server: Any
) -> None:
    client = await gateway(auth=AuthConfig(issuer=ISSUER, service=SERVICE,
                                           certificates=_bundle(signer, s3_server),
                                           realm="https://auth.example.com/token"))
    path = f"/api/v1/blobs/{next(iter(blobs))}/url"
    anonymous = await client.get(path, params={"repository": "library/a"})
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"] == (
        'Bearer realm="https://auth.example.com/token",service="test-registry",'
        'scope="repository:library/a:pull"')
    wrong_scope = await client.get(path, params={"repository": "library/a"},
                                   headers=bearer(signer, "library/b"))
    assert wrong_scope.status == 401
    assert 'error="insufficient_scope"' in wrong_scope.headers["WWW-Authenticate"]
    other = await client.get(path, params={"repository": "library/b"},
                             headers=bearer(signer, "library/b"))
    assert other.status == 404
    assert (await other.json())["errors"][0]["code"] == "BLOB_UNKNOWN"


def _bundle(signer: Signer, s3_server: Any) -> str:
    path = Path(s3_server.process.log_path).parent / "api-bundle.crt"
    path.write_bytes(signer.cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


async def test_realm_is_learnt_from_the_registry_challenge(
    gateway: GatewayFactory, signer: Signer, blobs: dict[str, bytes]
) -> None:
    client = await gateway()
    response = await client.get(f"/api/v1/blobs/{next(iter(blobs))}/url",
                                params={"repository": "library/a"})
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="http://issuer/token"')


async def test_batch_mixes_members_and_non_members(
    gateway: GatewayFactory, signer: Signer, blobs: dict[str, bytes], put_blob: Any
) -> None:
    client = await gateway()
    elsewhere = put_blob(os.urandom(100))  # in S3, but not in library/a
    digests = [*blobs, elsewhere, "sha256:nothex"]
    response = await client.post("/api/v1/blobs/urls", headers=bearer(signer),
                                 json={"repository": "library/a", "digests": digests,
                                       "expires_in": 300})
    assert response.status == 200
    entries = (await response.json())["urls"]
    assert [e["digest"] for e in entries] == digests
    for entry in entries[:3]:
        assert hashlib.sha256(await download(entry["url"])).hexdigest() == \
            entry["digest"].split(":")[1]
    assert entries[3]["error"]["code"] == "BLOB_UNKNOWN"
    assert entries[4]["error"]["code"] == "DIGEST_INVALID"
    too_many = await client.post("/api/v1/blobs/urls", headers=bearer(signer),
                                 json={"repository": "library/a", "digests": ["x"] * 101})
    assert too_many.status == 400
    assert "1 to 100" in (await too_many.json())["errors"][0]["message"]


async def test_batch_answers_each_digest_once_with_one_look_at_storage(
    gateway: GatewayFactory, signer: Signer, blobs: dict[str, bytes], s3_server: S3Server,
    lines: Lines,
) -> None:
    """``[d] * 100`` costs what ``[d]`` does: one storage HEAD, one signature, one audit
    record; and a later redirect of ``d`` reuses that look."""
    client = await gateway()
    first, second = list(blobs)[:2]
    before = len(heads(s3_server, first))
    response = await client.post("/api/v1/blobs/urls", headers=bearer(signer),
                                 json={"repository": "library/a",
                                       "digests": [first] * 98 + [second, first]})
    assert response.status == 200
    entries = (await response.json())["urls"]
    assert [e["digest"] for e in entries] == [first, second]  # first-seen order
    assert all("url" in e for e in entries)
    assert len(heads(s3_server, first)) == before + 1
    audited = [e["digest"] for e in lines.entries("blobgate.audit")]
    assert sorted(audited) == sorted([first, second])
    redirect = await client.get(f"/v2/library/a/blobs/{first}", headers=bearer(signer),
                                allow_redirects=False)
    assert redirect.status == 307
    assert len(heads(s3_server, first)) == before + 1  # the API's look served the redirect


@pytest.fixture
def cdn_key(tmp_path: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "cdn.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key, path


async def test_cdn_redirects_verify_and_bypass_networks_get_s3(
    gateway: GatewayFactory, signer: Signer, blobs: dict[str, bytes], s3_server: Any,
    cdn_key: tuple[rsa.RSAPrivateKey, Path],
) -> None:
    key, path = cdn_key
    cdn = CDNConfig(base_url="https://cdn.example.com", key_pair_id="KEXAMPLE",
                    private_key_file=str(path), expires_s=900, bypass_networks=("10.0.0.0/8",))
    storage = StorageConfig(s3=S3Config(bucket=BUCKET, endpoint_url=s3_server.endpoint_url),
                            cdn=cdn)
    client = await gateway(storage=storage,
                           routing=RoutingConfig(trusted_proxies=("127.0.0.0/8",)))
    digest = next(iter(blobs))
    response = await client.get(f"/v2/library/a/blobs/{digest}", headers=bearer(signer),
                                allow_redirects=False)
    assert response.status == 307
    resource, expires, signature, key_id = split(response.headers["Location"])
    verify(key.public_key(), resource, expires, signature)
    assert key_id == "KEXAMPLE"
    assert resource == ("https://cdn.example.com/docker/registry/v2/blobs/sha256/"
                        f"{digest[7:9]}/{digest[7:]}/data")
    assert abs(expires - (time.time() + 900)) < 5
    inside = await client.get(f"/v2/library/a/blobs/{digest}", allow_redirects=False,
                              headers={**bearer(signer), "X-Forwarded-For": "10.2.3.4"})
    assert inside.headers["Location"].startswith(s3_server.endpoint_url)


async def test_delete_invalidates_membership_and_urls(
    gateway: GatewayFactory, signer: Signer, blobs: dict[str, bytes], standin: Standin
) -> None:
    client = await gateway()
    digest = next(iter(blobs))
    path = f"/v2/library/a/blobs/{digest}"
    auth = bearer(signer)
    for _ in range(2):
        assert (await client.get(path, headers=auth, allow_redirects=False)).status == 307
    assert standin[0].count("HEAD", path) == 1  # cached
    deleted = await client.delete(path, headers=bearer(signer))
    assert deleted.status == 200  # the stand-in's echo accepted it
    del standin[0].blobs[("library/a", digest)]
    response = await client.get(path, headers=auth, allow_redirects=False)
    assert response.status == 404  # membership was checked again, and the registry said no
    assert standin[0].count("HEAD", path) == 2


async def test_admin_flush_drops_everything(
    gateway: GatewayFactory, signer: Signer, blobs: dict[str, bytes], standin: Standin,
    tmp_path: Path,
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from blobgate.admin import AdminToken, create_admin_app

    client = await gateway()
    digest = next(iter(blobs))
    path = f"/v2/library/a/blobs/{digest}"
    await client.get(path, headers=bearer(signer), allow_redirects=False)
    token_file = tmp_path / "admin-token"
    token_file.write_text("flush-token-0123456789\n")
    admin = TestClient(TestServer(create_admin_app(client.server.app, AdminToken(token_file))))
    await admin.start_server()
    try:
        answer = await admin.post("/admin/cache/flush",
                                  headers={"Authorization": "Bearer flush-token-0123456789"})
        flushed = await answer.json()
    finally:
        await admin.close()
    assert flushed["flushed"]["membership"] == 1
    assert flushed["flushed"]["url"] == 1
    await client.get(path, headers=bearer(signer), allow_redirects=False)
    assert standin[0].count("HEAD", path) == 2
