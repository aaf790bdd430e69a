"""The seed's presigned-URL endpoint, ``GET /api/v2.0/blobs/<digest>/url``, and Basic
credentials on the URL APIs, against the real stack: the distribution registry, the
development token service (which checks passwords and the policy) and S3.

Basic credentials are exchanged at the token service the registry's challenge names,
exactly as docker does; the token that comes back is then checked like any other.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from blobgate.devstack.clients import Credentials
from blobgate.devstack.image import OciImage
from blobgate.devstack.stack import PUSHER, TEAM_B_READER, Stack

pytestmark = pytest.mark.e2e


def basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(str(creds).encode()).decode()


def call(stack: Stack, digest: str, authorization: str | None, **query: str
         ) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers of a seed-endpoint request."""
    url = f"{stack.gateway_url}/api/v2.0/blobs/{digest}/url"
    if query:
        url += "?" + urlencode(query)
    request = urllib.request.Request(url)
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body


@pytest.fixture(scope="module")
def layer(image: OciImage, pushed: str) -> tuple[str, bytes]:
    blob = image.blobs[-1]
    return blob.digest, (image.path / "blobs" / "sha256" / blob.digest[7:]).read_bytes()


@pytest.mark.parametrize("how", ["bearer", "basic"])
def test_a_url_for_the_repository_downloads_the_blob(
    stack: Stack, pushed: str, layer: tuple[str, bytes], how: str,
) -> None:
    digest, data = layer
    authorization = (f"Bearer {stack.token(f'repository:{pushed}:pull', creds=PUSHER)}"
                     if how == "bearer" else basic(PUSHER))
    before = time.time()
    status, body, _ = call(stack, digest, authorization, repository=pushed)
    assert status == 200
    assert set(body) == {"url", "expires_at"}
    assert parse_qs(urlsplit(body["url"]).query)["X-Amz-Expires"] == ["3600"]  # the default
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + 3600 - 2 <= expires <= time.time() + 3600 + 1
    assert download(body["url"]) == data
    for life in ("1", "604800"):
        status, body, _ = call(stack, digest, authorization, repository=pushed,
                               expires_in=life)
        assert status == 200
        assert parse_qs(urlsplit(body["url"]).query)["X-Amz-Expires"] == [life]


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "abc", "", "604801"])
def test_a_bad_expires_in_is_a_400(
    stack: Stack, pushed: str, layer: tuple[str, bytes], value: str,
) -> None:
    status, body, _ = call(stack, layer[0], basic(PUSHER), repository=pushed, expires_in=value)
    assert status == 400
    assert body["errors"][0]["message"] == "expires_in must be between 1 second and 7 days"


def test_callers_the_registry_would_not_serve_get_no_url(
    stack: Stack, pushed: str, layer: tuple[str, bytes],
) -> None:
    digest = layer[0]
    status, _, headers = call(stack, digest, None, repository=pushed)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer realm=")
    wrong = basic(Credentials(PUSHER.username, "not-the-password"))
    for _ in range(2):  # the second refusal comes from blobgate's memory of the first
        status, body, headers = call(stack, digest, wrong, repository=pushed)
        assert status == 401
        assert "url" not in body
    status, body, _ = call(stack, digest, basic(TEAM_B_READER), repository=pushed)
    assert status == 403  # valid credentials, no pull on team-a
    assert body["errors"][0]["code"] == "DENIED"
    status, body, _ = call(stack, digest, basic(TEAM_B_READER), repository="team-b/app")
    assert status == 404  # pull on team-b, but the blob is team-a's
    assert body["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_without_a_repository_a_plain_registry_has_no_administrator(
    stack: Stack, layer: tuple[str, bytes],
) -> None:
    status, body, _ = call(stack, layer[0], basic(PUSHER))
    assert status == 400
    assert body["errors"][0]["message"] == "repository is required"


def test_basic_credentials_work_on_the_v1_api_too(
    stack: Stack, pushed: str, layer: tuple[str, bytes],
) -> None:
    digest, data = layer
    request = urllib.request.Request(
        f"{stack.gateway_url}/api/v1/blobs/{digest}/url?repository={pushed}",
        headers={"Authorization": basic(PUSHER)})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert body["size"] == len(data)
    assert download(body["url"]) == data
    log = stack.gateway.log_text()
    assert PUSHER.password not in log
    assert base64.b64encode(str(PUSHER).encode()).decode() not in log
