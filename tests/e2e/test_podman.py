"""podman pulls through blobgate: blobs are redirected to S3 and the image is stored."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from blobgate.devstack.image import OciImage
from blobgate.devstack.stack import PUSHER, Stack

pytestmark = pytest.mark.e2e


def test_podman_pull_is_redirected_to_s3(
    stack: Stack, image: OciImage, pushed: str, podman: Callable[..., str]
) -> None:
    seen_access, seen_s3 = len(stack.access_log()), len(stack.presigned_blob_gets())
    reference = f"{stack.gateway_host}/{pushed}:{image.tag}"

    podman("pull", "--tls-verify=false", "--creds", str(PUSHER), reference)

    expected = {blob.digest for blob in image.blobs}
    redirected = {
        e["digest"] for e in stack.access_log()[seen_access:]
        if e["method"] == "GET" and e["outcome"] == "redirect" and e["status"] == 307
    }  # fmt: skip
    assert redirected == expected
    assert set(stack.presigned_blob_gets()[seen_s3:]) == expected
    [inspected] = json.loads(podman("image", "inspect", reference))
    assert inspected["Id"] == image.config.digest.removeprefix("sha256:")
    assert inspected["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]
