"""Several replicas behave as one: two real ``blobgate serve`` processes share a real
Redis in front of the real registry.

What one replica learnt (a token the registry accepted, memberships, presigned URLs) is
served by the other with no upstream request; entries moved under another
repository's keys are not believed; a DELETE through one and an admin flush on one
reach the other within a second; Redis dying during traffic fails no request, and the
replicas recover by themselves when it returns. The Redis password (from the
environment) never reaches a log.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from blobgate.caches.shared import token_key
from blobgate.devstack.clients import skopeo_push
from blobgate.devstack.gateway import GatewayProcess, dev_environment
from blobgate.devstack.image import OciImage, build_image
from blobgate.devstack.redis import MACHINE, RedisServer, answers, mac_key
from blobgate.devstack.stack import PUSHER, Stack, gateway_config
from e2e.conftest import require

pytestmark = pytest.mark.e2e


MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json"
ADMIN_TOKEN = secrets.token_urlsafe(24)


def request(url: str, token: str | None = None, method: str = "GET") -> tuple[int, str]:
    """Status and Location of one request (redirects not followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Accept", MANIFEST_TYPES)
    try:
        with opener.open(req, timeout=30) as response:
            response.read()
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, error.headers.get("Location", "")


def metrics(gateway: GatewayProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"{gateway.metrics_url()}/metrics", timeout=10) as response:
        text = response.read().decode()
    values: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] += sample.value
    return dict(values)


def upstream_requests(gateway: GatewayProcess) -> float:
    return sum(v for k, v in metrics(gateway).items()
               if k.startswith("blobgate_upstream_responses_total"))


def eventually(condition: Callable[[], bool], within_s: float) -> float:
    """Seconds until ``condition`` held; fails after ``within_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within_s:
            raise AssertionError(f"not within {within_s} s")
        time.sleep(0.02)
    return time.monotonic() - started


@contextmanager
def replicas(stack: Stack, workdir: Path, redis_url: str,
             env: dict[str, str] | None = None) -> Iterator[tuple[GatewayProcess, ...]]:
    """Two blobgates in front of the stack's registry sharing ``redis_url``."""
    config = gateway_config(stack)
    config["redis"] = {"url": redis_url, "key_prefix": f"t{secrets.token_hex(4)}:",
                       "mac_key_file": str(mac_key(workdir))}
    token_file = workdir / "admin-token"
    token_file.write_text(ADMIN_TOKEN)
    config["admin"] = {"token_file": str(token_file)}
    started: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):
            started.append(GatewayProcess(workdir, config, name=f"replica-{name}",
                                          env=dev_environment(env)))
        yield tuple(started)
    finally:
        for gateway in started:
            gateway.stop()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis where it runs one, else a private one."""
    if answers(*MACHINE):
        yield f"redis://{MACHINE[0]}:{MACHINE[1]}/0"
        return
    require("redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def small(stack: Stack, e2e_dir: Path) -> OciImage:
    image = build_image(e2e_dir / "replicas-image", [64 * 1024, 128 * 1024], tag="v1")
    skopeo_push(image, stack.gateway_host, "replicas/app", PUSHER)
    return image


def pull_token(stack: Stack) -> str:
    return stack.token("repository:replicas/app:pull,push,delete", creds=PUSHER)


def test_b_serves_what_a_learnt_without_asking_the_registry(
    stack: Stack, small: OciImage, redis_url: str, tmp_path: Path,
) -> None:
    with replicas(stack, tmp_path, redis_url) as (a, b):
        token = pull_token(stack)
        status, _ = request(f"{a.url}/v2/replicas/app/manifests/v1", token)
        assert status == 200  # the pull's manifest request: the registry accepts the token
        blobs = [blob.digest for blob in small.blobs]
        from_a = {d: request(f"{a.url}/v2/replicas/app/blobs/{d}", token) for d in blobs}
        assert {s for s, _ in from_a.values()} == {307}
        before = upstream_requests(b)
        from_b = {d: request(f"{b.url}/v2/replicas/app/blobs/{d}", token) for d in blobs}
        assert from_b == from_a  # the same cached URLs
        assert upstream_requests(b) == before == 0  # not one request to the registry
        shared = metrics(b)
        assert shared['blobgate_shared_cache_requests_total{cache="m",result="hit"}'] == len(blobs)
        assert shared['blobgate_shared_cache_requests_total{cache="c",result="hit"}'] == 1


def test_a_delete_through_a_stops_b_within_a_second(
    stack: Stack, redis_url: str, tmp_path: Path, e2e_dir: Path,
) -> None:
    image = build_image(e2e_dir / "replicas-delete", [32 * 1024], tag="v1")
    skopeo_push(image, stack.gateway_host, "replicas/app", PUSHER)
    digest = image.blobs[-1].digest
    with replicas(stack, tmp_path, redis_url) as (a, b):
        token = pull_token(stack)
        assert request(f"{b.url}/v2/replicas/app/blobs/{digest}", token)[0] == 307
        assert request(f"{a.url}/v2/replicas/app/blobs/{digest}", token, "DELETE")[0] == 202
        took = eventually(
            lambda: request(f"{b.url}/v2/replicas/app/blobs/{digest}", token)[0] != 307, 1.0)
        print(f"\nB stopped redirecting {took * 1000:.0f} ms after the DELETE through A")
        assert request(f"{b.url}/v2/replicas/app/blobs/{digest}", token)[0] == 404


def test_entries_moved_to_another_repository_grant_nothing(
    stack: Stack, small: OciImage, redis_url: str, tmp_path: Path, e2e_dir: Path,
) -> None:
    """The two-SET attack, with entries a replica wrote itself: A's verdict on a token for
    replicas/app and its membership of a blob there, copied by someone who can write to
    Redis under replicas/other's keys, do not make B redirect replicas/other to that blob:
    their MACs were made for other keys, and the registry is asked instead."""
    other = build_image(e2e_dir / "replicas-other", [16 * 1024], tag="v1")
    skopeo_push(other, stack.gateway_host, "replicas/other", PUSHER)
    digest = small.blobs[0].digest
    with replicas(stack, tmp_path, redis_url) as (a, b):
        token = stack.token("repository:replicas/app:pull", "repository:replicas/other:pull",
                            creds=PUSHER)
        assert request(f"{a.url}/v2/replicas/app/blobs/{digest}", token)[0] == 307
        prefix = a.config["redis"]["key_prefix"]
        hashed = token_key(hashlib.sha256(token.encode()).digest())
        client = Redis.from_url(redis_url)
        try:
            for key in (f"c:{hashed}:replicas/app", f"m:replicas/app@{digest}"):
                value = client.get(prefix + key)
                assert value is not None
                client.set(prefix + key.replace("replicas/app", "replicas/other"), value, ex=300)
        finally:
            client.close()
        blob = f"{b.url}/v2/replicas/other/blobs/{digest}"
        assert request(blob, token)[0] == 404  # the registry's answer: not in replicas/other
        # Accepted for replicas/other by the registry itself, the token still meets the
        # moved membership, which is not believed either.
        assert request(f"{b.url}/v2/replicas/other/manifests/v1", token)[0] == 200
        assert request(blob, token)[0] == 404
        seen = metrics(b)
        for cache in ("c", "m"):
            assert seen[f'blobgate_shared_rejected_total{{cache="{cache}",reason="bad_mac"}}'] == 1


def test_a_flush_on_a_empties_b(
    stack: Stack, small: OciImage, redis_url: str, tmp_path: Path,
) -> None:
    with replicas(stack, tmp_path, redis_url) as (a, b):
        token = pull_token(stack)
        for blob in small.blobs:
            assert request(f"{b.url}/v2/replicas/app/blobs/{blob.digest}", token)[0] == 307
        assert metrics(b)['blobgate_cache_entries{cache="membership"}'] == len(small.blobs)
        flushed = urllib.request.Request(f"{a.admin_url()}/admin/cache/flush", method="POST",
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(flushed, timeout=10) as response:
            assert response.status == 200
        eventually(lambda: metrics(b)['blobgate_cache_entries{cache="membership"}'] == 0, 1.0)
        assert metrics(b)['blobgate_cache_entries{cache="url"}'] == 0
        assert metrics(b)['blobgate_shared_cache_invalidations_total{op="flush"}'] == 1


def test_redis_dying_fails_no_request_and_the_replicas_recover(
    stack: Stack, small: OciImage, tmp_path: Path,
) -> None:
    require("redis-server")
    password = secrets.token_urlsafe(18)
    server = RedisServer(tmp_path / "redis", password=password)
    try:
        with replicas(stack, tmp_path, server.url,
                      env={"BLOBGATE_REDIS_PASSWORD": password}) as (a, b):
            token = pull_token(stack)
            assert request(f"{a.url}/v2/replicas/app/manifests/v1", token)[0] == 200
            outcomes: Counter[int] = Counter()
            stop = threading.Event()

            def traffic() -> None:
                while not stop.is_set():
                    for blob in small.blobs:
                        fresh = pull_token(stack)  # A confirms it; B finds that in Redis
                        for gateway, each in ((a, fresh), (b, fresh), (b, token)):
                            url = f"{gateway.url}/v2/replicas/app/blobs/{blob.digest}"
                            outcomes[request(url, each)[0]] += 1

            worker = threading.Thread(target=traffic)
            worker.start()
            try:
                time.sleep(1.0)
                server.stop()  # Redis dies during traffic
                eventually(lambda: "redis unavailable" in readyz(b), 5.0)
                time.sleep(1.0)
                server.start()  # ...and comes back on the same port
                eventually(lambda: "redis unavailable" not in readyz(b), 15.0)
                hits = metrics(b).get('blobgate_shared_cache_requests_total'
                                      '{cache="c",result="hit"}', 0)
                eventually(lambda: metrics(b).get('blobgate_shared_cache_requests_total'
                                                  '{cache="c",result="hit"}', 0) > hits, 15.0)
            finally:
                stop.set()
                worker.join()
            assert set(outcomes) <= {307}, outcomes  # not one request failed
            seen = metrics(b)
            # Redis's failure was seen (by whichever call met it first: often the
            # invalidation listener, whose failure then has lookups skip Redis for a while),
            # and lookups were answered without it.
            assert sum(v for k, v in seen.items()
                       if k.startswith("blobgate_shared_cache_errors_total{")) >= 1
            assert sum(v for k, v in seen.items()
                       if k.startswith("blobgate_shared_cache_requests_total{")
                       and 'result="error"' in k) >= 1
            for gateway in (a, b):
                assert password not in gateway.log_text()
                assert readyz(gateway).startswith('{"status": "ready"')
    finally:
        server.stop()


def readyz(gateway: GatewayProcess) -> str:
    try:
        with urllib.request.urlopen(f"{gateway.metrics_url()}/readyz", timeout=10) as response:
            return json.dumps(json.load(response))
    except urllib.error.HTTPError as error:
        return json.dumps(json.load(error))
