"""A real skopeo pull through a tracing blobgate: spans reach an OTLP/HTTP receiver as
real protobuf, one trace per request in the trace the client's side started, and the
registry (behind a recording relay) is sent ``traceparent`` in that same trace, on the
request blobgate passed through and on blobgate's own HEAD.

skopeo sends no ``traceparent`` itself: a relay in front of blobgate stamps a fresh one
on every request, as a tracing ingress does.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from blobgate.devstack.clients import skopeo_pull
from blobgate.devstack.gateway import GatewayProcess, dev_environment, merged
from blobgate.devstack.image import OciImage
from blobgate.devstack.stack import PUSHER, Stack, gateway_config

from support.otlp import SERVER_KIND, ReceivedSpan, Receiver, Relay

pytestmark = pytest.mark.e2e

DIGEST = re.compile(r"[0-9a-f]{64}")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.")


async def serve(app: Any) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def traced_pull(stack: Stack, image: OciImage, pushed: str, tmp_path: Path
                      ) -> tuple[list[ReceivedSpan], Relay, Relay]:
    """Pull ``pushed`` with skopeo → stamping relay → tracing blobgate → recording relay →
    the stack's registry; the spans received once blobgate has stopped (and flushed)."""
    receiver, registry = Receiver(), Relay(stack.registry.url)
    servers = [await serve(receiver.app()), await serve(registry.app())]
    config = merged(gateway_config(stack), {
        "upstream": {"url": str(servers[1].make_url("")).rstrip("/")},
        "tracing": {"enabled": True},
        "membership": {"warm_from_manifests": False},  # so the blob GETs ask the registry
    })
    env = dev_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": str(servers[0].make_url("")),
                           "OTEL_BSP_SCHEDULE_DELAY": "100",
                           "OTEL_SERVICE_NAME": "blobgate-e2e"})
    gateway = await asyncio.to_thread(GatewayProcess, tmp_path / "gw", config, env=env)
    try:
        front = Relay(gateway.url, stamp=True)
        servers.append(await serve(front.app()))
        host = str(servers[2].make_url("")).removeprefix("http://").rstrip("/")
        await asyncio.to_thread(skopeo_pull, host, f"{pushed}:{image.tag}",
                                tmp_path / "pulled", PUSHER)
    finally:
        await asyncio.to_thread(gateway.stop)  # the exporter flushes on shutdown
        for server in servers:
            await server.close()
    return receiver.spans, front, registry


def trace_id(traceparent: str | None) -> str:
    assert traceparent is not None
    return traceparent.split("-")[1]


async def test_one_server_span_per_request_in_the_clients_trace(
    traced_pull: tuple[list[ReceivedSpan], Relay, Relay], image: OciImage, pushed: str,
) -> None:
    spans, front, _ = traced_pull
    servers = [s for s in spans if s.kind == SERVER_KIND]
    assert {s.service for s in spans} == {"blobgate-e2e"}
    sent = {trace_id(r.traceparent): r for r in front.seen}
    assert sorted(s.trace_id for s in servers) == sorted(sent)  # one per request
    for span in servers:
        request = sent[span.trace_id]
        assert span.parent_id == request.traceparent.split("-")[2]  # type: ignore[union-attr]
    blob_gets = [s for s in servers if s.name == "GET /v2/{name}/blobs/{digest}"]
    assert {s.attributes["blobgate.digest"] for s in blob_gets} == {
        b.digest for b in image.blobs}
    for span in blob_gets:
        assert span.attributes["blobgate.repository"] == pushed
        assert span.attributes["blobgate.outcome"] == "redirect"
        assert span.attributes["blobgate.reason"] in ("signed", "memory")
        assert span.attributes["http.response.status_code"] == 307
    manifests = [s for s in servers if s.name.endswith(" /v2/{name}/manifests/{reference}")]
    assert manifests
    assert {s.attributes["blobgate.route"] for s in manifests} == {"passthrough"}
    steps = {s.name for s in spans if s.kind != SERVER_KIND}
    assert {"blobgate.token", "blobgate.admit", "blobgate.registry.membership",
            "blobgate.storage.check", "blobgate.sign"} <= steps


async def test_no_digest_or_token_outside_the_digest_attribute(
    traced_pull: tuple[list[ReceivedSpan], Relay, Relay],
) -> None:
    spans, _, _ = traced_pull
    assert spans
    for span in spans:
        assert not DIGEST.search(span.name), span.name
        assert not JWT.search(span.name), span.name
        for key, value in span.attributes.items():
            if key != "blobgate.digest":
                assert not DIGEST.search(str(value)), (span.name, key)
            assert not JWT.search(str(value)), (span.name, key)


async def test_the_registry_is_sent_the_same_trace(
    traced_pull: tuple[list[ReceivedSpan], Relay, Relay],
) -> None:
    spans, front, registry = traced_pull
    by_trace = {trace_id(r.traceparent): r for r in front.seen}
    ours = {s.span_id for s in spans}
    relayed = [r for r in registry.seen if r.traceparent is not None]
    assert len(relayed) == len(registry.seen)  # every request blobgate sent carries one
    for request in relayed:
        assert trace_id(request.traceparent) in by_trace
        parent = request.traceparent.split("-")[2]  # type: ignore[union-attr]
        assert parent in ours  # a span of blobgate's, in the client's trace
    passed = [r for r in relayed if "/manifests/" in r.path]
    assert passed
    assert all(by_trace[trace_id(r.traceparent)].path == r.path for r in passed)
    heads = [r for r in relayed if r.method == "HEAD" and "/blobs/" in r.path]
    assert heads  # blobgate's own checks, each in the trace of the client's blob GET
    for head in heads:
        client = by_trace[trace_id(head.traceparent)]
        assert (client.method, client.path) == ("GET", head.path)
