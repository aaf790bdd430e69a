"""Secrets of every shape blobgate or its libraries might log are scrubbed."""

import pytest

from blobgate.ops.redact import REDACTED, redact

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXBhcnQ"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /k?X-Amz-Date=1&X-Amz-Signature=0a1b2c3d&X-Amz-Expires=60", "0a1b2c3d"),
        ("url ...&X-Amz-Security-Token=FwoGZXIvYXdzE%2Fabc&...", "FwoGZXIvYXdzE%2Fabc"),
        ("/k?AWSAccessKeyId=AKIA&Signature=nD%2BSsg%3D&Expires=1", "nD%2BSsg%3D"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("authorization: basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        (f"bad token {JWT} seen", JWT),
        ("postgresql://blobgate:hunter2@db:5432/audit", "hunter2"),
        ('{"password": "hunter2"}', "hunter2"),
        ("aws_secret_access_key = wJalrXUtnFEMI", "wJalrXUtnFEMI"),
        ("Signature:\n40f318b751439a030f3848", "40f318b751439a030f3848"),
        ("Credential=AKIA/x, SignedHeaders=host, Signature=deadbeef", "deadbeef"),
    ],
)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "GET /v2/library/a/blobs/sha256:" + "a" * 64,
        "token_cache_size: 100000",
        "presign host s3.example.com is under the gateway host example.com",
    ],
)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert redact(text) == text
