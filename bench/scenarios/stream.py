"""Scenario ``stream``: one large blob streamed through blobgate vs nginx ``proxy_pass``.

The origin is nginx serving a random file at ``/v2/<name>/blobs/<digest>`` (sendfile,
client core). blobgate (``routing.default: stream``, ``storage.backend: proxy``, upstream
= the origin), an nginx ``proxy_pass`` with default buffering and the bare-aiohttp relay
floor run on the server core; curl on the client core downloads to /dev/null and its
byte count is checked. Rounds alternate between them; the origin alone is the ceiling.
Then several simultaneous streams through blobgate, with its resident memory.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

from bench import curl
from bench.gateway import Gateway
from bench.nginx import Nginx
from bench.procstat import PeakRSS, hwm_mib
from bench.report import Result, Table, Target, ratio
from bench.tools import CLIENT_CPU, SERVER_CPU
from bench.world import MiB, World

REPOSITORY = "bench/stream"
CHUNK = 8 * MiB
STREAMING = {"storage": {"backend": "proxy"}, "routing": {"default": "stream"}}


def write_random_blob(root: Path, size: int) -> str:
    """Write ``size`` random bytes where the origin serves the blob; return its path."""
    blobs = root / "v2" / REPOSITORY / "blobs"
    blobs.mkdir(parents=True)
    partial, digest = blobs / "partial", hashlib.sha256()
    with partial.open("wb") as out:
        for offset in range(0, size, CHUNK):
            chunk = os.urandom(min(CHUNK, size - offset))
            digest.update(chunk)
            out.write(chunk)
    name = f"sha256:{digest.hexdigest()}"
    partial.rename(blobs / name)
    return f"/v2/{REPOSITORY}/blobs/{name}"


def mib_s(size: int, seconds: float) -> float:
    """Throughput in MiB/s."""
    return size / MiB / seconds if seconds > 0 else 0.0


def run(world: World) -> Result:
    """Single streams (alternating targets), then simultaneous streams through blobgate."""
    mode, size = world.mode, world.mode.stream_bytes
    path = write_random_blob(world.workdir / "origin-root", size)
    token = world.pull_tokens(REPOSITORY, 1)[0]
    speeds: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    with ExitStack() as running:
        origin = running.enter_context(
            Nginx.origin(world.workdir, world.workdir / "origin-root", CLIENT_CPU))
        proxy = running.enter_context(Nginx.proxy(world.workdir, origin.url, SERVER_CPU))
        overrides = {**STREAMING, "upstream": {"url": origin.url}}
        gateway = running.enter_context(
            Gateway(world.stack, world.workdir, "stream", overrides, cpus=SERVER_CPU))
        relay = running.enter_context(world.floor("relay", "relay", "--origin", origin.url))
        urls = {"blobgate": gateway.url, "nginx proxy_pass": proxy.url,
                "aiohttp relay floor": relay, "origin alone": origin.url}
        for url in urls.values():  # token and membership cached, connections made
            curl.fetch(url + path, token, byte_range="0-0")
        for _ in range(mode.stream_rounds):
            for target, url in urls.items():
                download = curl.fetch(url + path, token)
                speeds[target].append(mib_s(download.size, download.seconds))
                errors[target] += not download.ok(size)
        single_hwm = hwm_mib(gateway.pid)
        with PeakRSS(gateway.pid, interval_s=0.05) as peak:
            downloads, wall = curl.fetch_parallel(gateway.url + path, token, mode.streams)
        all_hwm = hwm_mib(gateway.pid)
    ours = statistics.median(speeds["blobgate"])
    single = Table(
        f"Streaming one {size // MiB} MiB blob (proxy on core 0; origin and curl on core 1)",
        ["path", "downloads", "median MiB/s", "min MiB/s", "max MiB/s", "errors",
         "blobgate ÷ this"],
    )
    for target, values in speeds.items():
        single.add(target, len(values), f"{statistics.median(values):,.0f}",
                   f"{min(values):,.0f}", f"{max(values):,.0f}", errors[target],
                   "—" if target == "blobgate" else ratio(ours, statistics.median(values)))
    single.notes += [
        f"blobgate: storage.backend proxy, routing.default stream, stream_chunk_bytes "
        f"default; VmHWM after these: {single_hwm:.1f} MiB. nginx: one worker, default proxy "
        "buffers. aiohttp relay floor: a bare aiohttp app (asyncio loop) passing on each piece as "
        "it arrives (iter_any), core 0. origin alone: curl straight from the origin.",
        "errors: downloads that were not a 200 of exactly the blob's size (curl's count).",
    ]
    bad = sum(not d.ok(size) for d in downloads)
    together = Table(
        f"{mode.streams} simultaneous {size // MiB} MiB streams through blobgate",
        ["streams", "wall s", "aggregate MiB/s", "peak VmRSS MiB", "VmHWM MiB", "errors"],
    )
    together.add(mode.streams, f"{wall:.1f}",
                 f"{mib_s(size * mode.streams, wall):,.0f}", f"{peak.peak_mib:.1f}",
                 f"{all_hwm:.1f}", bad)
    nginx = statistics.median(speeds["nginx proxy_pass"])
    hwm_mb = all_hwm * MiB / 1e6
    return Result([single, together], [
        Target("stream ≥ 1.5x nginx proxy_pass", ratio(ours, nginx), ours >= 1.5 * nginx),
        Target(f"peak RSS < 150 MB with {mode.streams} streams", f"{hwm_mb:.0f} MB (VmHWM)",
               hwm_mb < 150),
    ])
