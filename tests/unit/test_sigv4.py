"""Locally signed S3 URLs are the URLs botocore signs, byte for byte in what matters."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import botocore.auth
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from blobgate.backends.sigv4 import Credentials, QuerySigner

from support.sigv4 import expected_signature

NOW = datetime.datetime(2026, 11, 25, 5, 4, 3)
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEYS = [
    "docker/registry/v2/blobs/sha256/ab/" + "ab" * 32 + "/data",
    "my root+x/docker/registry/v2/blobs/sha512/cd/" + "cd" * 64 + "/data",
]


def parts(url: str) -> tuple[str, str, dict[str, str]]:
    split = urlsplit(url)
    return split.netloc, split.path, dict(parse_qsl(split.query, keep_blank_values=True))


@pytest.mark.parametrize("endpoint", [None, "http://localhost:9000", "https://s3.example.com:8443"])
@pytest.mark.parametrize("style", ["path", "virtual"])
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE//session+token=="])
@pytest.mark.parametrize(("operation", "method", "response"), [
    ("get_object", "GET", {}),
    ("get_object", "GET", {"ResponseContentDisposition": 'attachment; filename="a b.tar"',
                           "ResponseCacheControl": "max-age=60"}),
    ("head_object", "HEAD", {}),  # the existence check's own URL
])
async def test_local_urls_equal_botocores(
    monkeypatch: pytest.MonkeyPatch, endpoint: str | None, style: str, token: str | None,
    operation: str, method: str, response: dict[str, str],
) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: NOW)
    session = AioSession()
    session.set_credentials("AKIDEXAMPLE", SECRET, token)
    config = AioConfig(signature_version="s3v4", s3={"addressing_style": style})
    async with session.create_client("s3", region_name="eu-west-1", endpoint_url=endpoint,
                                     config=config) as client:
        first: Any = await client.generate_presigned_url(
            operation, Params={"Bucket": "registry", "Key": "probe/key"}, ExpiresIn=60)
        signer = QuerySigner.learn(first, "probe/key", "eu-west-1")
        for key in KEYS:
            theirs = await client.generate_presigned_url(
                operation, Params={"Bucket": "registry", "Key": key, **response},
                ExpiresIn=1200)
            query = {"response-content-disposition": response.get("ResponseContentDisposition"),
                     "response-cache-control": response.get("ResponseCacheControl")}
            ours = signer.sign(key, 1200, Credentials("AKIDEXAMPLE", SECRET, token),
                               {k: v for k, v in query.items() if v is not None},
                               now=NOW.replace(tzinfo=datetime.UTC).timestamp(), method=method)
            assert parts(ours) == parts(theirs)
            assert parts(ours)[2]["X-Amz-Signature"] == expected_signature(ours, SECRET, method)


def test_learning_needs_the_key_at_the_end_of_the_path() -> None:
    with pytest.raises(ValueError, match="does not end with the object key"):
        QuerySigner.learn("https://h/bucket/other?X-Amz-Date=x", "probe/key", "us-east-1")
