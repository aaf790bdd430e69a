"""containerd's ``ctr`` pulls through blobgate: blobs are redirected to S3 and unpacked."""

from __future__ import annotations

import hashlib

import pytest

from blobgate.devstack.containerd import Containerd
from blobgate.devstack.image import OciImage, verified_blobs
from blobgate.devstack.stack import PUSHER, Stack

pytestmark = pytest.mark.e2e


def chain_ids(image: OciImage) -> list[str]:
    """The OCI chain ID of each layer stack: the snapshot names of an unpacked image."""
    chain = [image.layers[0].diff_id]
    for layer in image.layers[1:]:
        chain.append(
            "sha256:" + hashlib.sha256(f"{chain[-1]} {layer.diff_id}".encode()).hexdigest()
        )
    return chain


def test_ctr_pull_is_redirected_to_s3_and_unpacks(
    stack: Stack, image: OciImage, pushed: str, containerd: Containerd
) -> None:
    seen_access, seen_s3 = len(stack.access_log()), len(stack.presigned_blob_gets())
    reference = f"{stack.gateway_host}/{pushed}:{image.tag}"

    pulled = containerd.ctr(
        "images", "pull", "--plain-http", "--snapshotter", "native",
        "--user", str(PUSHER), reference,
    )  # fmt: skip

    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    expected = {blob.digest for blob in image.blobs}
    redirected = {
        e["digest"] for e in stack.access_log()[seen_access:]
        if e["method"] == "GET" and e["outcome"] == "redirect" and e["status"] == 307
    }  # fmt: skip
    assert redirected == expected
    assert set(stack.presigned_blob_gets()[seen_s3:]) == expected
    content = verified_blobs(containerd.content_dir)
    for blob in (image.manifest, *image.blobs):
        assert content.get(blob.digest) == blob.size
    listed = containerd.ctr("images", "ls")
    assert f"{reference} " in listed.stdout
    assert image.manifest.digest in listed.stdout
    snapshots = containerd.ctr("snapshots", "--snapshotter", "native", "ls")
    for chain_id in chain_ids(image):
        assert f"{chain_id} " in snapshots.stdout
