"""Scenario ``cold``: the first request for a token and a blob blobgate has never seen.

Each cold request carries a token blobgate never verified, for a blob whose membership
and presigned URL it never cached; the same (token, blob) pairs are then repeated warm.
Requests are sequential on one keep-alive connection from this process (moved to the
client core), so latency is blobgate's plus one loopback round trip. Upstream round
trips come from blobgate's /metrics, S3 requests from moto's log (the registry's and
blobgate's), CPU from blobgate's utime+stime (10 ms ticks, hence many requests).
blobgate runs its default configuration (logs at info: one line per request).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from bench.client import Client
from bench.gateway import DEFAULT_LOGGING, Gateway
from bench.procstat import cpu_s
from bench.report import Result, Table, Target, ratio
from bench.tools import CLIENT_CPU, SERVER_CPU, two_cores
from bench.world import World

REPOSITORY = "bench/cold"
WARM_REPEATS = 20
CPU_TARGET_MS = 0.4


@contextmanager
def on_client_core() -> Iterator[None]:
    """Run this process on the client core for a while."""
    saved = os.sched_getaffinity(0)
    if two_cores():
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


@dataclass(frozen=True)
class Phase:
    """Sequential requests and what they cost blobgate."""

    latencies_ms: list[float]
    cpu_ms: float
    upstream: float
    s3: int
    errors: int

    def per_request(self, value: float) -> float:
        return value / len(self.latencies_ms)

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


def phase(world: World, gateway: Gateway, client: Client, pairs: Sequence[tuple[str, str]]
          ) -> Phase:
    """Send ``pairs`` one after the other; measure latency, CPU, upstream and S3 requests."""
    upstream = gateway.counter("blobgate_upstream_responses_total")
    s3, cpu = len(world.stack.s3.requests()), cpu_s(gateway.pid)
    latencies, errors = [], 0
    for path, token in pairs:
        status, _, elapsed = client.get(path, token)
        latencies.append(elapsed * 1000)
        errors += status != 307
    return Phase(
        latencies_ms=latencies,
        cpu_ms=(cpu_s(gateway.pid) - cpu) * 1000,
        upstream=gateway.counter("blobgate_upstream_responses_total") - upstream,
        s3=len(world.stack.s3.requests()) - s3,
        errors=errors,
    )


def run(world: World) -> Result:
    """Cold requests, then the same pairs warm."""
    count = world.mode.cold_requests
    digests = world.pusher.random_blobs(REPOSITORY, count + 1, world.mode.blob_bytes)
    tokens = world.pull_tokens(REPOSITORY, count + 1)
    pairs = [(f"/v2/{REPOSITORY}/blobs/{d}", t) for d, t in zip(digests, tokens, strict=True)]
    with (Gateway(world.stack, world.workdir, "cold", DEFAULT_LOGGING, cpus=SERVER_CPU) as gateway,
          on_client_core(), Client(gateway.url) as client):
        phase(world, gateway, client, pairs[:1])  # first use: connections, lazy imports
        cold = phase(world, gateway, client, pairs[1:])
        warm = phase(world, gateway, client, pairs[1:] * WARM_REPEATS)
    table = Table(
        "Cold path: first request for a new token and blob vs the same requests warm",
        ["request", "n", "p50 ms", "p99 ms", "mean ms", "upstream round trips / req",
         "S3 requests / req", "blobgate CPU ms / req", "errors"],
    )
    for name, each in (("cold", cold), ("warm", warm)):
        table.add(name, len(each.latencies_ms), f"{each.percentile(50):.2f}",
                  f"{each.percentile(99):.2f}", f"{statistics.fmean(each.latencies_ms):.2f}",
                  f"{each.per_request(each.upstream):.2f}", f"{each.per_request(each.s3):.2f}",
                  f"{each.per_request(each.cpu_ms):.3f}", each.errors)
    table.notes += [
        f"cold ÷ warm latency (p50): "
        f"{ratio(cold.percentile(50), warm.percentile(50))}; CPU: "
        f"{ratio(cold.per_request(cold.cpu_ms), warm.per_request(warm.cpu_ms))}.",
        "Sequential, one keep-alive connection, blobgate on core 0 and the client on core 1; "
        "one priming cold request first (excluded). S3 requests include the registry's.",
    ]
    trips, cpu_ms = cold.per_request(cold.upstream), cold.per_request(cold.cpu_ms)
    return Result([table], [Target(
        f"cold path ≤ 1 upstream round trip and ≤ {CPU_TARGET_MS} ms of blobgate CPU",
        f"{trips:.2f} round trips, {cpu_ms:.3f} ms", trips <= 1 and cpu_ms <= CPU_TARGET_MS)])
