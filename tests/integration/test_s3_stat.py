"""The S3 existence check against moto over HTTP: a HEAD of a URL signed here, sent to
the endpoint blobgate reaches S3 by (never the public one clients use)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from blobgate.backends.s3 import open_s3
from blobgate.config import S3Config
from blobgate.devstack.procs import free_port
from blobgate.devstack.s3 import S3Server
from blobgate.errors import NotInStorage, StorageError
from blobgate.reference import parse_digest

from support.gateway import BUCKET

ABSENT = parse_digest("sha256:" + "e" * 64)


def heads(s3_server: S3Server, digest: str) -> list[str]:
    """The HEAD requests of ``digest``'s object that reached S3, by target."""
    return [r.target for r in s3_server.requests()
            if r.method == "HEAD" and digest.removeprefix("sha256:") in r.target]


async def test_present_absent_and_signed(
    s3_server: S3Server, put_blob: Callable[[bytes], str]
) -> None:
    data = os.urandom(3210)
    digest = put_blob(data)
    cfg = S3Config(bucket=BUCKET, endpoint_url=s3_server.endpoint_url,
                   public_endpoint_url=f"http://127.0.0.1:{free_port()}")  # nobody there
    async with open_s3(cfg) as storage:
        for _ in range(2):  # botocore signs the first HEAD, blobgate the second
            assert await storage.stat(parse_digest(digest)) == len(data)
        with pytest.raises(NotInStorage):
            await storage.stat(ABSENT)
        url = (await storage.presign_blob(parse_digest(digest))).url
    sent = heads(s3_server, digest)
    assert len(sent) == 2
    assert all("X-Amz-Signature=" in target for target in sent)
    assert url.startswith(cfg.public_endpoint_url or "")  # clients' URLs: the public name


async def test_storage_out_of_reach_is_a_storage_error_not_an_absence() -> None:
    cfg = S3Config(bucket=BUCKET, endpoint_url=f"http://127.0.0.1:{free_port()}")
    async with open_s3(cfg) as storage:
        with pytest.raises(StorageError) as failed:
            await storage.stat(ABSENT)
    assert not isinstance(failed.value, NotInStorage)
    assert failed.value.reason == "ClientConnectorError"
