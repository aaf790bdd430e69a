"""Manifest confusion against the real registry: warm-up never learns a digest the
registry did not check.

Mallory may push and pull ``mallory/app`` only; team A's private layer ``S`` lives in
``team-a/app``. She uploads ``X`` and ``C`` to her repository and PUTs manifests whose
keys Go (the registry) and an exact-case reader see differently: the registry checks
``X`` and ``C`` and stores the manifest. Pulling it through blobgate must not make ``S``
hers: no redirect, no local ``HEAD``, no URL from the URL API; the registry's own 404
comes back. An honest manifest still warms: its first pull asks the registry nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from blobgate.devstack.clients import Credentials
from blobgate.devstack.policy import Policy, Rule
from blobgate.devstack.registry import RegistryRequest
from blobgate.devstack.stack import PUSHER, Stack
from blobgate.registry.manifests import DOCKER_MANIFEST, OCI_MANIFEST
from e2e.conftest import require

from support.manifest_forms import (
    DOCKER_LAYER,
    VARIANTS,
    descriptor,
    image,
    manifests,
    shadowed,
)

pytestmark = pytest.mark.e2e
MALLORY = Credentials("mallory", "mallory-dev-password")
POLICY = Policy(
    users={PUSHER.username: PUSHER.password, MALLORY.username: MALLORY.password},
    rules=(Rule(PUSHER.username, "*", ("pull", "push")),
           Rule(MALLORY.username, "mallory/*", ("pull", "push"))),
)
MINE, THEIRS = "mallory/app", "team-a/app"
ACCEPT = f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"
TAGS = itertools.count()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def call(base_url: str, method: str, path: str, token: str,
         headers: dict[str, str] | None = None, body: bytes | None = None) -> Answer:
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.request(method, path, body=body,
                           headers={"Authorization": f"Bearer {token}", **(headers or {})})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def upload(stack: Stack, name: str, data: bytes, token: str) -> str:
    """Put ``data`` into ``name`` at the registry (POST, then PUT ?digest=)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = call(stack.registry.url, "POST", f"/v2/{name}/blobs/uploads/", token)
    assert started.status == 202, started.body
    location = urlsplit(started.headers["Location"])
    done = call(stack.registry.url, "PUT", f"{location.path}?{location.query}&digest={digest}",
                token, {"Content-Type": "application/octet-stream"}, data)
    assert done.status == 201, done.body
    return digest


@dataclass(frozen=True)
class Scene:
    stack: Stack
    token: str  # Mallory's: push and pull on mallory/app only
    config: str
    x: str
    secret: str  # team A's S

    def metric(self, name: str) -> float:
        """The sum of the samples of ``name`` blobgate exports now."""
        url = f"{self.stack.metrics_url}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples if sample.name == name)

    def put(self, kind: str, body: bytes) -> tuple[str, int]:
        tag = f"v{next(TAGS)}"
        answer = call(self.stack.gateway_url, "PUT", f"/v2/{MINE}/manifests/{tag}", self.token,
                      {"Content-Type": kind}, body)
        return tag, answer.status

    def pull_manifest(self, tag: str, body: bytes) -> None:
        """GET it through blobgate, and wait until that request (warm-up included) is done."""
        requests = self.metric("blobgate_requests_total")
        answer = call(self.stack.gateway_url, "GET", f"/v2/{MINE}/manifests/{tag}", self.token,
                      {"Accept": ACCEPT})
        assert (answer.status, answer.body) == (200, body)
        deadline = time.monotonic() + 30
        while self.metric("blobgate_requests_total") < requests + 1:
            assert time.monotonic() < deadline, "the manifest GET was never finished"
            time.sleep(0.05)

    def registry_requests(self) -> list[RegistryRequest]:
        """What the registry has answered so far: all of it, once a request sent now
        shows in its log."""
        marker = f"/v2/?seen={next(TAGS)}"
        call(self.stack.registry.url, "GET", marker, self.token)
        deadline = time.monotonic() + 30
        while True:
            answered = self.stack.registry.requests()
            if any(r.uri == marker for r in answered):
                return answered
            assert time.monotonic() < deadline, "the registry never logged the marker"
            time.sleep(0.05)

    def assert_secret_not_mine(self) -> None:
        """blobgate gives nothing of S under mallory/app; the registry's 404 comes back."""
        path = f"/v2/{MINE}/blobs/{self.secret}"
        for method in ("GET", "HEAD"):
            direct = call(self.stack.registry.url, method, path, self.token)
            via = call(self.stack.gateway_url, method, path, self.token)
            assert via.status == direct.status == 404
            assert via.body == direct.body
            assert "Location" not in via.headers
        api = call(self.stack.gateway_url, "GET",
                   f"/api/v1/blobs/{self.secret}/url?repository={MINE}", self.token)
        assert api.status == 404, api.body
        assert b"X-Amz-Signature" not in api.body


@pytest.fixture(scope="module")
def scene(e2e_dir: Path) -> Iterator[Scene]:
    require("docker-registry")
    with Stack(e2e_dir / "confusion", policy=POLICY) as stack:
        alice = stack.token(f"repository:{THEIRS}:pull,push", creds=PUSHER)
        secret = upload(stack, THEIRS, b"team A's private layer " + os.urandom(64), alice)
        token = stack.token(f"repository:{MINE}:pull,push", creds=MALLORY)
        config = upload(stack, MINE, b'{"architecture":"amd64","os":"linux"}', token)
        x = upload(stack, MINE, os.urandom(256), token)
        yield Scene(stack, token, config, x, secret)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_confused_manifest_does_not_open_another_repositorys_blob(
    scene: Scene, variant: str
) -> None:
    kind, body = VARIANTS[variant](scene.config, scene.secret, scene.x)
    tag, status = scene.put(kind, body)
    assert status == 201  # the registry read X and C, which are Mallory's
    refused = scene.metric("blobgate_warmup_refused_total")
    scene.pull_manifest(tag, body)
    scene.assert_secret_not_mine()
    assert scene.metric("blobgate_warmup_refused_total") == refused + 1


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_manifests_never_open_another_repositorys_blob(
    scene: Scene, data: st.DataObject
) -> None:
    c, x, secret = scene.config, scene.x, scene.secret
    kind, body = data.draw(st.one_of(shadowed(c, secret, x),
                                      manifests(digests=(c, x, secret))))
    tag, status = scene.put(kind, body)
    # Accepted, or refused: 400 (S is not Mallory's, a bad shape) or 500 (urls on a layer,
    # which distribution allows none of by default).
    assert status in (201, 400, 500)
    event(f"registry answered {status}")
    if status == 201:
        scene.pull_manifest(tag, body)
        scene.assert_secret_not_mine()


def test_an_honest_manifest_still_warms(scene: Scene) -> None:
    layers = [upload(scene.stack, MINE, os.urandom(512), scene.token) for _ in range(3)]
    body = image(DOCKER_MANIFEST, scene.config, [descriptor(d, DOCKER_LAYER) for d in layers])
    tag, status = scene.put(DOCKER_MANIFEST, body)
    assert status == 201
    scene.pull_manifest(tag, body)
    seen = len(scene.registry_requests())
    for digest in layers:
        answer = call(scene.stack.gateway_url, "GET", f"/v2/{MINE}/blobs/{digest}", scene.token)
        assert answer.status == 307
    asked = [r for r in scene.registry_requests()[seen:] if "/blobs/" in r.uri]
    assert asked == []  # no membership HEAD, no blob GET: warm-up had learnt them
