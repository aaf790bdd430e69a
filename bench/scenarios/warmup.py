"""Scenario ``warmup``: first pull of a 10-layer image, with and without
``membership.warm_from_manifests``.

A pull is what a client does: GET the manifest by tag through blobgate, then GET the
config and every layer at once (redirects not followed: the 307 is blobgate's part).
Each pull uses a fresh connection pool, a fresh token and an image blobgate has never
seen; the registry's own caches are warmed first so that both configurations meet the
same registry. The scenario is skipped when ``blobgate check-config`` rejects the key.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import urllib.request
from dataclasses import dataclass

import aiohttp

from bench.gateway import Gateway, config_error
from bench.push import Image
from bench.report import Result, Table, ratio
from bench.scenarios.cold import on_client_core
from bench.tools import SERVER_CPU
from bench.world import World
from blobgate.devstack.image import OCI_MANIFEST

KEY = "warm_from_manifests"
LAYERS = 10
SETTLE_S = 0.5  # a pull's background presigning and size look-ups finish before the next
ACCEPT = f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Pull:
    """One first pull: total and manifest time, and how many blob GETs got a 307."""

    total_ms: float
    manifest_ms: float
    redirects: int


async def pull(base_url: str, image: Image, token: str) -> Pull:
    """Manifest, then all blobs concurrently, on a fresh connection pool."""
    auth = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    async with aiohttp.ClientSession(base_url) as session:
        manifest = f"/v2/{image.repository}/manifests/{image.tag}"
        async with session.get(manifest, headers={**auth, "Accept": ACCEPT}) as response:
            document = await response.json(content_type=None)
        manifest_ms = (time.perf_counter() - started) * 1000
        digests = [document["config"]["digest"], *(d["digest"] for d in document["layers"])]

        async def blob(digest: str) -> int:
            path = f"/v2/{image.repository}/blobs/{digest}"
            async with session.get(path, headers=auth, allow_redirects=False) as answer:
                await answer.read()
                return answer.status

        statuses = await asyncio.gather(*(blob(digest) for digest in digests))
    total_ms = (time.perf_counter() - started) * 1000
    return Pull(total_ms, manifest_ms, sum(status == 307 for status in statuses))


def warm_registry(world: World, images: list[Image]) -> None:
    """GET each manifest and HEAD each blob at the registry itself."""
    base = world.stack.registry.url
    for image in images:
        token = world.pull_tokens(image.repository, 1)[0]
        paths = [f"/v2/{image.repository}/manifests/{image.tag}",
                 *(f"/v2/{image.repository}/blobs/{d}" for d in image.blobs)]
        for i, path in enumerate(paths):
            request = urllib.request.Request(base + path, method="GET" if i == 0 else "HEAD")  # noqa: S310
            request.add_header("Authorization", f"Bearer {token}")
            request.add_header("Accept", ACCEPT)
            with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - loopback
                pass


def run(world: World) -> Result:
    """First pulls with the key off and on."""
    title = f"First pull of a {LAYERS}-layer image (manifest + config + layers)"
    for value in (False, True):
        error = config_error(world.stack, world.workdir, {"membership": {KEY: value}})
        if error is not None:
            return Result([Table(f"{title}: skipped", [], notes=[
                f"Skipped: `blobgate check-config` rejects membership.{KEY}: {error}"])])
    images = [world.pusher.image(f"bench/pull-{i}", LAYERS, world.mode.blob_bytes)
              for i in range(world.mode.pulls)]
    warm_registry(world, images)
    table = Table(title, [f"membership.{KEY}", "pulls", "p50 ms", "mean ms", "max ms",
                          "manifest p50 ms", "blob GETs p50 ms", "blob GETs answered 307",
                          "upstream round trips / pull", "S3 requests / pull"])
    medians = {}
    for value in (False, True):
        overrides = {"membership": {KEY: value}}
        with (Gateway(world.stack, world.workdir, f"warmup-{value}", overrides,
                      cpus=SERVER_CPU) as gateway, on_client_core()):
            tokens = [world.pull_tokens(image.repository, 1)[0] for image in images]
            upstream = gateway.counter("blobgate_upstream_responses_total")
            s3 = len(world.stack.s3.requests())
            pulls = []
            for image, token in zip(images, tokens, strict=True):
                pulls.append(asyncio.run(pull(gateway.url, image, token)))
                time.sleep(SETTLE_S)
            upstream = gateway.counter("blobgate_upstream_responses_total") - upstream
            s3 = len(world.stack.s3.requests()) - s3
        totals = [p.total_ms for p in pulls]
        medians[value] = statistics.median(totals)
        table.add(str(value).lower(), len(pulls), f"{medians[value]:.1f}",
                  f"{statistics.fmean(totals):.1f}", f"{max(totals):.1f}",
                  f"{statistics.median(p.manifest_ms for p in pulls):.1f}",
                  f"{statistics.median(p.total_ms - p.manifest_ms for p in pulls):.1f}",
                  f"{sum(p.redirects for p in pulls)} of {len(pulls) * (LAYERS + 1)}",
                  f"{upstream / len(pulls):.1f}", f"{s3 / len(pulls):.1f}")
    table.notes += [
        f"without ÷ with (p50): {ratio(medians[False], medians[True])}. blobgate on core 0, "
        "client (aiohttp, this process) on core 1; redirects not followed.",
        "blob GETs: from the manifest's arrival until every blob GET was answered (all at "
        "once). S3 requests include the registry's; upstream round trips are blobgate's, "
        "manifest included.",
    ]
    return Result([table])
