"""skopeo pushes through blobgate and pulls back: uploads pass through, downloads come from S3."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from blobgate.devstack.clients import skopeo_pull
from blobgate.devstack.image import OciImage, verified_blobs
from blobgate.devstack.stack import BUCKET, PUSHER, Stack

pytestmark = pytest.mark.e2e


def test_push_through_blobgate_stores_every_blob_in_s3(
    stack: Stack, image: OciImage, pushed: str
) -> None:
    completed = [
        r for r in stack.registry.requests() if r.method == "PUT" and r.status == 201
        and r.uri.startswith(f"/v2/{pushed}/")
    ]  # fmt: skip
    relayed = [
        e for e in stack.access_log() if e["method"] == "PUT" and e["status"] == 201
        and e["outcome"] == "passthrough" and e["path"].startswith(f"/v2/{pushed}/")
    ]  # fmt: skip
    uploaded = {unquote(r.uri).rpartition("digest=")[2] for r in completed if "digest=" in r.uri}

    assert uploaded == {blob.digest for blob in image.blobs}
    assert len(relayed) == len(completed) == len(image.blobs) + 1  # blobs and the manifest
    s3 = stack.s3.client()
    for blob in image.blobs:
        hex_digest = blob.digest.removeprefix("sha256:")
        key = f"docker/registry/v2/blobs/sha256/{hex_digest[:2]}/{hex_digest}/data"
        assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == blob.size


def test_pull_through_blobgate_downloads_every_blob_from_s3(
    stack: Stack, image: OciImage, pushed: str, tmp_path: Path
) -> None:
    seen_access, seen_registry = len(stack.access_log()), len(stack.registry.requests())
    seen_s3 = len(stack.presigned_blob_gets())

    skopeo_pull(stack.gateway_host, f"{pushed}:{image.tag}", tmp_path / "pulled", PUSHER)

    blob_gets = [
        e for e in stack.access_log()[seen_access:] if e["method"] == "GET" and e["route"] == "blob"
    ]
    expected = {blob.digest for blob in image.blobs}
    assert {e["digest"] for e in blob_gets} == expected
    assert {(e["outcome"], e["status"], e["repository"]) for e in blob_gets} == {
        ("redirect", 307, pushed)
    }
    assert set(stack.presigned_blob_gets()[seen_s3:]) == expected
    registry_blob_gets = [
        r for r in stack.registry.requests()[seen_registry:]
        if r.method == "GET" and "/blobs/" in r.uri
    ]  # fmt: skip
    assert registry_blob_gets == []
    on_disk = verified_blobs(tmp_path / "pulled" / "blobs")
    for blob in (image.manifest, *image.blobs):
        assert on_disk.get(blob.digest) == blob.size
