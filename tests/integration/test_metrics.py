"""Metrics and probes, checked by the amounts real requests move them."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from blobgate.config import UpstreamConfig
from blobgate.health import create_metrics_app

from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]


def delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


REDIRECT = 'blobgate_requests_total{method="GET",outcome="redirect",route="blob"}'
DENIED = 'blobgate_requests_total{method="GET",outcome="denied",route="blob"}'
LOCAL = 'blobgate_requests_total{method="HEAD",outcome="local",route="blob"}'
PASS = 'blobgate_requests_total{method="GET",outcome="passthrough",route="passthrough"}'
INVALID = 'blobgate_requests_total{method="GET",outcome="invalid",route="blob"}'


async def test_request_counters_move_by_the_requests_made(
    gateway: GatewayFactory, scrape: Scrape, signer: Signer, put_blob: Any, standin: Standin
) -> None:
    data = os.urandom(12345)
    digest = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data
    standin[0].head_redirects = False
    client = await gateway()
    auth = {"Authorization": f"Bearer {signer.token('library/a')}"}
    path = f"/v2/library/a/blobs/{digest}"
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get(path, headers=auth, allow_redirects=False)).status == 307
    assert (await client.get(path, allow_redirects=False)).status == 401
    assert (await client.head(path, headers=auth)).status == 200
    assert (await client.get("/v2/", allow_redirects=False)).status == 401
    assert (await client.get("/v2/Bad/blobs/x")).status == 400
    after = await scrape(client)
    assert delta(after, before, REDIRECT) == 3
    assert delta(after, before, DENIED) == 1
    assert delta(after, before, LOCAL) == 1
    assert delta(after, before, PASS) == 1
    assert delta(after, before, INVALID) == 1
    assert delta(after, before, 'blobgate_offloaded_bytes_total{backend="s3"}') == 3 * len(data)
    assert delta(after, before, 'blobgate_membership_checks_total{result="member",'
                                'source="upstream"}') == 1
    assert delta(after, before, 'blobgate_cache_requests_total{cache="membership",'
                                'result="hit"}') == 3
    assert delta(after, before, 'blobgate_cache_requests_total{cache="url",result="miss"}') == 1
    assert delta(after, before, 'blobgate_cache_requests_total{cache="url",result="hit"}') == 2
    assert delta(after, before, 'blobgate_cache_requests_total{cache="token",result="hit"}') == 3
    # the membership HEAD; the client's HEAD is answered from the membership cache
    assert delta(after, before, 'blobgate_upstream_responses_total{status_class="2xx"}') == 1
    assert delta(after, before, "blobgate_upstream_check_duration_seconds_count{}") == 1
    # the anonymous blob GET and /v2/ were challenged by the registry
    assert delta(after, before, 'blobgate_upstream_responses_total{status_class="4xx"}') == 2
    assert delta(after, before, 'blobgate_request_duration_seconds_count{route="blob"}') == 6
    assert after['blobgate_request_duration_seconds_bucket{le="+Inf",route="blob"}'] >= 6
    assert delta(after, before, "blobgate_streamed_bytes_total{}") > 0
    assert after["blobgate_requests_in_flight{}"] == 0


async def test_upstream_check_latency_is_the_registrys_answer_time(
    gateway: GatewayFactory, scrape: Scrape, signer: Signer, put_blob: Any, standin: Standin
) -> None:
    data = os.urandom(100)
    digest = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data
    standin[0].head_redirects = False
    standin[0].head_delay_s = 0.3
    client = await gateway()
    before = await scrape(client)
    auth = {"Authorization": f"Bearer {signer.token('library/a')}"}
    path = f"/v2/library/a/blobs/{digest}"
    assert (await client.get(path, headers=auth, allow_redirects=False)).status == 307
    after = await scrape(client)
    bucket = 'blobgate_upstream_check_duration_seconds_bucket{{le="{}"}}'
    assert delta(after, before, bucket.format("0.25")) == 0
    assert delta(after, before, bucket.format("0.5")) == 1
    assert 0.3 <= delta(after, before, "blobgate_upstream_check_duration_seconds_sum{}") < 0.5


async def test_offloaded_bytes_learnt_from_s3_when_upstream_redirects(
    gateway: GatewayFactory, scrape: Scrape, signer: Signer, put_blob: Any, standin: Standin
) -> None:
    data = os.urandom(4321)
    digest = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data  # HEAD upstream answers 307: size unknown
    client = await gateway()
    auth = {"Authorization": f"Bearer {signer.token('library/a')}"}
    before = await scrape(client)
    for _ in range(2):
        response = await client.get(f"/v2/library/a/blobs/{digest}", headers=auth,
                                    allow_redirects=False)
        assert response.status == 307
    # The size is learnt from S3 in the background, after the redirects went out.
    for _ in range(100):
        after = await scrape(client)
        if delta(after, before, 'blobgate_offloaded_bytes_total{backend="s3"}') >= 2 * len(data):
            break
        await asyncio.sleep(0.05)
    assert delta(after, before, 'blobgate_offloaded_bytes_total{backend="s3"}') == 2 * len(data)


async def test_no_repository_or_digest_in_labels(
    gateway: GatewayFactory, scrape: Scrape, signer: Signer
) -> None:
    client = await gateway()
    await client.get("/v2/library/secret-name/blobs/sha256:" + "e" * 64, allow_redirects=False)
    text = " ".join(await scrape(client))
    assert "secret-name" not in text
    assert "e" * 64 not in text


async def test_probes(gateway: GatewayFactory, standin: Standin) -> None:
    client = await gateway()
    probes = TestClient(TestServer(create_metrics_app(client.server.app)))
    await probes.start_server()
    try:
        assert (await probes.get("/healthz")).status == 200
        ready = await probes.get("/readyz")
        assert ready.status == 200, await ready.text()
        assert (await ready.json())["status"] == "ready"
    finally:
        await probes.close()


async def test_readyz_reports_an_unreachable_upstream(gateway: GatewayFactory) -> None:
    client = await gateway(upstream=UpstreamConfig(url="http://127.0.0.1:9", timeout_s=1))
    probes = TestClient(TestServer(create_metrics_app(client.server.app)))
    await probes.start_server()
    try:
        ready = await probes.get("/readyz")
        assert ready.status == 503
        body = await ready.json()
        assert body["status"] == "not ready"
        assert any("upstream unreachable" in reason for reason in body["reasons"])
        assert (await probes.get("/healthz")).status == 200
    finally:
        await probes.close()
