"""The nearest copy, with real parts: the registry writes to the stack's S3 (the
primary), a second S3 server stands for the ``eu`` region holding all blobs but one,
Azurite stands for an on-prem ``site`` copy; each copy signs with its own credentials
file. Clients are told apart by a trusted proxy's ``X-Forwarded-For`` (the proxy
connects from 127.0.0.2, the only trusted address); the eu network comes from an AWS
``ip-ranges.json`` written in the test with documentation ranges.

skopeo pulls and checks every digest; the gateway's access lines say which location
each blob GET was redirected to, and the stores' own logs show who served it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blobgate.devstack import s3 as devs3
from blobgate.devstack.clients import skopeo_pull
from blobgate.devstack.gateway import GatewayProcess, dev_environment
from blobgate.devstack.image import OciImage, verified_blobs
from blobgate.devstack.stack import BUCKET, PUSHER, Stack, gateway_config
from blobgate.reference import parse_digest, storage_key

from support import feeds
from support.azurite import ACCOUNT, CONTAINER, KEY, Azurite
from support.xff import XFFProxy

pytestmark = pytest.mark.e2e
EU_BUCKET = "registry-eu"
EU_CLIENT, SITE_CLIENT, ELSEWHERE = "198.51.100.7", "203.0.113.5", "192.0.2.10"


@pytest.fixture
def eu(tmp_path: Path) -> Iterator[devs3.S3Server]:
    (tmp_path / "eu-s3").mkdir()
    with devs3.S3Server(tmp_path / "eu-s3") as server:
        server.client().create_bucket(Bucket=EU_BUCKET)
        yield server


def replicate(stack: Stack, image: OciImage, put: Any, skip: str | None = None) -> None:
    """Copy the image's blobs from the primary under the same keys (as replication would)."""
    primary = stack.s3.client()
    for blob in (image.manifest, *image.blobs):
        if blob.digest == skip:
            continue
        key = storage_key(stack.registry_options.rootdirectory, parse_digest(blob.digest))
        put(key, primary.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.fixture
def gateway(stack: Stack, image: OciImage, pushed: str, eu: devs3.S3Server,
            azurite: Azurite, tmp_path: Path) -> Iterator[GatewayProcess]:
    eu_client = eu.client()
    replicate(stack, image, lambda key, data: eu_client.put_object(
        Bucket=EU_BUCKET, Key=key, Body=data), skip=image.blobs[-1].digest)
    replicate(stack, image, lambda key, data: azurite.client.get_blob_client(
        CONTAINER, key).upload_blob(data, overwrite=True))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "eu").write_text(f"[default]\naws_access_key_id = EUCOPYKEY\n"
                                f"aws_secret_access_key = {devs3.SECRET_KEY}\n")
    (secrets / "site").write_text(KEY)
    feed = feeds.write(tmp_path / "ip-ranges.json", "aws", {
        "eu-west-1": ["198.51.100.0/24", "2001:db8:e0::/48"], "us-east-1": ["192.0.2.0/24"]})
    s3 = gateway_config(stack)["storage"]["s3"]
    config = {**gateway_config(stack), "storage": {"backend": "s3", "s3": s3, "copies": [
        {"name": "eu", "backend": "s3", "credentials_file": str(secrets / "eu"),
         "s3": {**s3, "bucket": EU_BUCKET, "region": "eu-west-1",
                "endpoint_url": eu.endpoint_url}},
        {"name": "site", "backend": "azure", "credentials_file": str(secrets / "site"),
         "azure": {"account_name": ACCOUNT, "container": CONTAINER,
                   "endpoint_url": azurite.endpoint_url}},
    ]}, "routing": {
        "trusted_proxies": ["127.0.0.2/32"],
        "ip_ranges": [{"provider": "aws", "source": str(feed)}],
        "rules": [
            {"name": "eu", "networks": ["aws:eu-west-1"], "locations": ["eu", "primary"]},
            {"name": "site", "networks": ["203.0.113.0/24"], "locations": ["site"]},
        ]}}
    with GatewayProcess(tmp_path / "gw", config, name="blobgate-copies",
                        env=dev_environment()) as process:
        yield process


def pull_as(gateway: GatewayProcess, source: str, client: str, image: OciImage,
            repository: str, layout: Path) -> dict[str, dict[str, Any]]:
    """skopeo pull through a proxy at ``source`` claiming ``client``; each blob GET's line."""
    seen = len(gateway.access_log())
    with XFFProxy(gateway.url, source, client) as proxy:
        skopeo_pull(proxy.host, f"{repository}:{image.tag}", layout, PUSHER)
    on_disk = verified_blobs(layout / "blobs")  # skopeo checked them; so do we
    assert all(on_disk.get(b.digest) == b.size for b in (image.manifest, *image.blobs))
    gets = {e["digest"]: e for e in gateway.access_log()[seen:]
            if e["route"] == "blob" and e["method"] == "GET"}
    assert set(gets) == {b.digest for b in image.blobs}
    assert {(e["outcome"], e["status"]) for e in gets.values()} == {("redirect", 307)}
    return gets


def presigned_gets(server: devs3.S3Server, since: int) -> set[str]:
    return {r.target.split("?")[0].rsplit("/", 2)[-2] for r in server.requests()[since:]
            if r.method == "GET" and r.presigned and r.status == 200}


def test_each_client_is_sent_to_the_nearest_copy_holding_the_blob(
    stack: Stack, image: OciImage, pushed: str, eu: devs3.S3Server, azurite: Azurite,
    gateway: GatewayProcess, tmp_path: Path,
) -> None:
    lacking = image.blobs[-1].digest
    held = {b.digest for b in image.blobs} - {lacking}
    eu_seen, primary_seen = len(eu.requests()), len(stack.s3.requests())

    from_eu = pull_as(gateway, "127.0.0.2", EU_CLIENT, image, pushed, tmp_path / "eu")
    assert {d: e["location"] for d, e in from_eu.items()} == {
        **dict.fromkeys(held, "eu"), lacking: "primary"}
    assert {e["client"] for e in from_eu.values()} == {EU_CLIENT}
    assert presigned_gets(eu, eu_seen) == {parse_digest(d).hex for d in held}
    assert parse_digest(lacking).hex in presigned_gets(stack.s3, primary_seen)
    assert any(r.method == "HEAD" and parse_digest(lacking).hex in r.target
               for r in eu.requests()[eu_seen:])  # looked for, not found: never sent there
    assert any("X-Amz-Credential=EUCOPYKEY" in r.target for r in eu.requests()[eu_seen:])

    from_site = pull_as(gateway, "127.0.0.2", SITE_CLIENT, image, pushed, tmp_path / "site")
    assert {e["location"] for e in from_site.values()} == {"site"}
    assert all(f"sha256/{parse_digest(d).hex[:2]}/{parse_digest(d).hex}/data?" in
               azurite.process.log_text() for d in from_site)

    eu_seen = len(eu.requests())
    elsewhere = pull_as(gateway, "127.0.0.2", ELSEWHERE, image, pushed, tmp_path / "else")
    assert {e["location"] for e in elsewhere.values()} == {"primary"}
    forged = pull_as(gateway, "127.0.0.3", EU_CLIENT, image, pushed, tmp_path / "forged")
    assert {e["location"] for e in forged.values()} == {"primary"}  # untrusted peer: no eu
    assert {e["client"] for e in forged.values()} == {"127.0.0.3"}
    assert eu.requests()[eu_seen:] == []

    again = pull_as(gateway, "127.0.0.2", EU_CLIENT, image, pushed, tmp_path / "again")
    assert {d: e["location"] for d, e in again.items()} == {
        **dict.fromkeys(held, "eu"), lacking: "primary"}
    assert not any(r.method == "HEAD" for r in eu.requests()[eu_seen:]
                   if parse_digest(lacking).hex not in r.target)  # warm: no look again
