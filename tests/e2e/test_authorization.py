"""Authorization through blobgate: the registry's own challenges, and no cross-repository reads."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from blobgate.devstack.clients import ClientError, skopeo_pull, skopeo_push
from blobgate.devstack.image import MiB, OciImage, build_image
from blobgate.devstack.stack import PUSHER, TEAM_B_READER, Stack

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Answer:
    """An HTTP response as seen on the wire (redirects are not followed)."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes


def get(base_url: str, path: str, token: str | None = None) -> Answer:
    """GET ``path`` from ``base_url`` with an optional Bearer token."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def test_anonymous_skopeo_pull_of_private_repository_is_refused(
    stack: Stack, image: OciImage, pushed: str, tmp_path: Path
) -> None:
    seen = len(stack.access_log())

    with pytest.raises(ClientError) as refused:
        skopeo_pull(stack.gateway_host, f"{pushed}:{image.tag}", tmp_path / "pulled", None)

    assert "authentication required" in refused.value.output
    assert list((tmp_path / "pulled").rglob("sha256/*")) == []
    statuses = {(e["outcome"], e["status"]) for e in stack.access_log()[seen:]}
    assert ("passthrough", 401) in statuses
    assert not any(outcome == "redirect" for outcome, _ in statuses)


@pytest.mark.parametrize("with_anonymous_token", [False, True], ids=["no-token", "anon-token"])
@pytest.mark.parametrize("target", ["manifest", "blob"])
def test_unauthorized_requests_get_the_registrys_own_401(
    stack: Stack, image: OciImage, pushed: str, target: str, with_anonymous_token: bool
) -> None:
    name = image.tag if target == "manifest" else image.layers[0].digest
    path = f"/v2/{pushed}/{target}s/{name}"
    token = stack.token(f"repository:{pushed}:pull") if with_anonymous_token else None

    direct = get(stack.registry.url, path, token)
    via_gateway = get(stack.gateway_url, path, token)

    assert direct.status == 401
    assert via_gateway.status == direct.status
    assert via_gateway.headers["WWW-Authenticate"] == direct.headers["WWW-Authenticate"]
    assert via_gateway.headers["Content-Type"] == direct.headers["Content-Type"]
    assert via_gateway.body == direct.body
    assert "Location" not in via_gateway.headers


@pytest.fixture(scope="module")
def team_images(stack: Stack, pushed: str, e2e_dir: Path) -> tuple[OciImage, OciImage]:
    """A private image only in ``team-a/secret`` and another in ``team-b/app``."""
    secret = build_image(e2e_dir / "secret-image", [1 * MiB])
    team_b = build_image(e2e_dir / "team-b-image", [1 * MiB])
    skopeo_push(secret, stack.gateway_host, "team-a/secret", PUSHER)
    skopeo_push(team_b, stack.gateway_host, "team-b/app", PUSHER)
    return secret, team_b


def test_pull_grant_on_b_does_not_open_blobs_that_live_only_in_a(
    stack: Stack, team_images: tuple[OciImage, OciImage]
) -> None:
    secret, team_b = team_images
    token = stack.token("repository:team-b/app:pull", creds=TEAM_B_READER)
    seen_access, seen_s3 = len(stack.access_log()), len(stack.presigned_blob_gets())

    own = get(stack.gateway_url, f"/v2/team-b/app/blobs/{team_b.layers[0].digest}", token)
    for blob in secret.blobs:
        path = f"/v2/team-b/app/blobs/{blob.digest}"
        via_gateway = get(stack.gateway_url, path, token)
        direct = get(stack.registry.url, path, token)
        assert via_gateway.status == direct.status == 404
        assert via_gateway.body == direct.body
        assert [e["code"] for e in json.loads(via_gateway.body)["errors"]] == ["BLOB_UNKNOWN"]
        assert "Location" not in via_gateway.headers

    assert own.status == 307
    assert urlsplit(own.headers["Location"]).netloc == urlsplit(stack.s3.endpoint_url).netloc
    secret_digests = {blob.digest for blob in secret.blobs}
    redirected = [e["digest"] for e in stack.access_log()[seen_access:] if e["status"] == 307]
    assert redirected == [team_b.layers[0].digest]
    assert not secret_digests & set(stack.presigned_blob_gets()[seen_s3:])
