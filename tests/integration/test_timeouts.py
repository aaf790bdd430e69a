"""Two clocks towards the registry: what blobgate relays for a client may take as long as
the registry needs (a large upload is finished tens of seconds after its last byte),
while blobgate's own checks give up fast and let the request pass through."""

from __future__ import annotations

import os
from typing import Any

from blobgate.config import UpstreamConfig

from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]


def upstream(standin: Standin, **settings: Any) -> UpstreamConfig:
    return UpstreamConfig(url=str(standin[1].make_url("")), **settings)


async def test_an_upload_finished_after_the_check_timeout_lands(
    gateway: GatewayFactory, standin: Standin,
) -> None:
    standin[0].finalize_s = 1.5
    client = await gateway(upstream=upstream(standin, check_timeout_s=0.3))
    body = os.urandom(3 << 20)
    response = await client.put("/v2/proj/app/blobs/uploads/u1?digest=sha256:x", data=body,
                                headers={"Authorization": "Bearer t"})
    assert response.status == 200  # the stand-in's echo, 1.5 s after the last byte
    assert (await response.json())["size"] == len(body)


async def test_a_check_slower_than_its_timeout_passes_the_pull_through(
    gateway: GatewayFactory, standin: Standin, put_blob: Any, signer: Signer, scrape: Scrape,
) -> None:
    data = os.urandom(5000)
    digest = put_blob(data)
    standin[0].blobs[("proj/app", digest)] = data
    standin[0].head_delay_s = 1.0
    client = await gateway(upstream=upstream(standin, check_timeout_s=0.3))
    response = await client.get(f"/v2/proj/app/blobs/{digest}", allow_redirects=False,
                                headers={"Authorization": f"Bearer {signer.token('proj/app')}"})
    assert response.status == 200  # the registry's own answer, not a 504
    assert await response.read() == data
    metrics = await scrape(client)
    assert metrics['blobgate_fallbacks_total{reason="check_failed"}'] == 1

