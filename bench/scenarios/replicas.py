"""Scenario ``replicas``: what a second replica asks of the registry and S3 for an image
the first one already served, with and without a shared Redis.

Two blobgates (A and B, default membership settings) front the same registry. For each
image, a client pulls it through A (manifest, then config and layers), then another
client with its own token pulls it through B. B's upstream requests come from its
/metrics (the manifest request itself passes through either way), S3 requests from
moto's log during B's pull (the registry's own included).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from bench.gateway import Gateway
from bench.report import Result, Table
from bench.scenarios.cold import on_client_core
from bench.scenarios.warmup import LAYERS, SETTLE_S, pull, warm_registry
from bench.tools import SERVER_CPU
from bench.world import World


def run(world: World) -> Result:
    """B's cost for images A served, Redis off and on."""
    images = [world.pusher.image(f"bench/replica-{i}", LAYERS, world.mode.blob_bytes)
              for i in range(world.mode.pulls)]
    warm_registry(world, images)
    table = Table(f"Second replica, {LAYERS}-layer images the first replica served",
                  ["redis", "pulls through B", "upstream requests / pull (B)",
                   "S3 requests / pull (during B's)", "blob GETs answered 307 (B)"])
    for shared in (False, True):
        with contextlib.ExitStack() as running:
            overrides = ({"redis": running.enter_context(world.redis("replicas"))}
                         if shared else {})
            a, b = (running.enter_context(Gateway(world.stack, world.workdir,
                                                  f"replica-{name}-{shared}", overrides,
                                                  cpus=SERVER_CPU)) for name in "ab")
            running.enter_context(on_client_core())
            upstream = s3 = redirects = 0
            for image in images:
                token_a, token_b = world.pull_tokens(image.repository, 2)
                asyncio.run(pull(a.url, image, token_a))
                time.sleep(SETTLE_S)
                before = (b.counter("blobgate_upstream_responses_total"),
                          len(world.stack.s3.requests()))
                redirects += asyncio.run(pull(b.url, image, token_b)).redirects
                time.sleep(SETTLE_S)  # B's background look-ups count too
                upstream += int(b.counter("blobgate_upstream_responses_total") - before[0])
                s3 += len(world.stack.s3.requests()) - before[1]
        table.add("on" if shared else "off", len(images), f"{upstream / len(images):.1f}",
                  f"{s3 / len(images):.1f}", f"{redirects} of {len(images) * (LAYERS + 1)}")
    table.notes.append(
        "Without Redis, B learns memberships from the manifest (warm-up) but must look "
        "every object up in S3 and sign every URL itself; with Redis it finds A's URLs "
        "and memberships. The one upstream request is the client's own manifest GET.")
    return Result([table])
