"""``python -m bench storm``: a morning storm. Hundreds of CI jobs, each with a token of
its own, pull the same 10-layer image at once: the manifest, then the config and the
layers three at a time (containerd's default ``max_concurrent_downloads``), redirects
not followed; once against blobgate in its default configuration, once against the
registry's own redirect (a second registry on the same bucket).

Per pull: the time from its start to its last redirect; per target: upstream requests
(blobgate's ``/metrics``, the client's own manifest requests included), S3 requests
(moto's log, the registry's included), CPU of the server process, errors (any answer
other than 200 for the manifest or 307 for a blob, and any failed connection).
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench import machine, report
from bench.gateway import DEFAULT_LOGGING, Gateway
from bench.procstat import cpu_s
from bench.push import Image
from bench.report import Table, Target
from bench.runner import say, targets_table
from bench.scenarios.warmup import ACCEPT, warm_registry
from bench.world import QUICK, World

TOKENS = 500
LAYERS = 10
LAYER_BYTES = 4096
PER_PULL_CONNECTIONS = 3
TIMEOUT_S = 300


@dataclass(frozen=True)
class Storm:
    """What one storm measured against one target."""

    target: str
    seconds: list[float]  # per pull, start to last redirect (failed pulls left out)
    errors: int
    upstream: float | None
    storage: int
    cpu_s: float

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.seconds, n=100, method="inclusive")[q - 1]


async def _pull(base_url: str, image: Image, token: str) -> float | None:
    """One pull; seconds to its last redirect, ``None`` when anything went wrong."""
    auth = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=PER_PULL_CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    started = time.perf_counter()
    try:
        async with aiohttp.ClientSession(base_url, connector=connector,
                                         timeout=timeout) as session:
            manifest = f"/v2/{image.repository}/manifests/{image.tag}"
            async with session.get(manifest, headers={**auth, "Accept": ACCEPT}) as answer:
                await answer.read()
                if answer.status != 200:
                    return None

            async def blob(digest: str) -> int:
                path = f"/v2/{image.repository}/blobs/{digest}"
                async with session.get(path, headers=auth, allow_redirects=False) as answer:
                    await answer.read()
                    return answer.status

            statuses = await asyncio.gather(*(blob(digest) for digest in image.blobs))
    except (aiohttp.ClientError, TimeoutError):
        return None
    return time.perf_counter() - started if set(statuses) == {307} else None


async def _all(base_url: str, image: Image, tokens: list[str]) -> list[float | None]:
    return await asyncio.gather(*(_pull(base_url, image, token) for token in tokens))


def storm(world: World, target: str, url: str, pid: int, image: Image, tokens: list[str],
          upstream: Callable[[], float] | None) -> Storm:
    """Every token pulls ``image`` from ``url`` at once."""
    before = (upstream() if upstream else 0.0, len(world.stack.s3.requests()), cpu_s(pid))
    results = asyncio.run(_all(url, image, tokens))
    return Storm(target, [s for s in results if s is not None],
                 sum(s is None for s in results),
                 (upstream() - before[0]) / len(tokens) if upstream else None,
                 len(world.stack.s3.requests()) - before[1], cpu_s(pid) - before[2])


def _measure(world: World, count: int) -> list[Storm]:
    image = world.pusher.image("storm/app", LAYERS, LAYER_BYTES)
    warm_registry(world, [image])
    say(f"storm: minting {2 * count} tokens")
    tokens = world.pull_tokens(image.repository, 2 * count)
    with Gateway(world.stack, world.workdir, "storm", DEFAULT_LOGGING) as gateway:
        say("storm: blobgate")
        ours = storm(world, "blobgate (default configuration)", gateway.url, gateway.pid,
                     image, tokens[:count],
                     lambda: gateway.counter("blobgate_upstream_responses_total"))
    with world.redirecting_registry() as registry:
        say("storm: the registry's own redirect")
        theirs = storm(world, "registry's own redirect", registry.url,
                       registry.process.popen.pid, image, tokens[count:], None)
    return [ours, theirs]


def _table(storms: list[Storm], count: int) -> tuple[Table, list[Target]]:
    table = Table(f"Pull storm: {count} new tokens pulling a {LAYERS}-layer image at once",
                  ["target", "pulls ok", "errors", "p50 s to last redirect",
                   "p99 s to last redirect", "upstream requests / pull",
                   "S3 requests / pull", "server CPU ms / pull"])
    for each in storms:
        table.add(each.target, len(each.seconds), each.errors, f"{each.percentile(50):.2f}",
                  f"{each.percentile(99):.2f}",
                  "—" if each.upstream is None else f"{each.upstream:.2f}",
                  f"{each.storage / count:.2f}", f"{each.cpu_s * 1000 / count:.1f}")
    ours, theirs = storms
    better = theirs.percentile(99) / ours.percentile(99)
    table.notes.append(f"p99 registry ÷ blobgate: {better:.2f}x. Client: this process "
                       f"(aiohttp, a connection pool of {PER_PULL_CONNECTIONS} per pull), "
                       "everything on the same two shared cores, over loopback.")
    return table, [
        Target("≤ 1 upstream request per (token, repository) beyond the client's manifest",
               f"{ours.upstream:.2f} per pull, manifest included", (ours.upstream or 0) <= 2),
        Target("0 errors in the storm", f"{ours.errors} (registry: {theirs.errors})",
               ours.errors == 0),
        Target("p99 ≥ 5x better than the registry's own redirect", f"{better:.2f}x",
               better >= 5),
    ]


def run(count: int, out: Path, command: str) -> int:
    """The storm against both targets; its table written to ``out``."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started, load_before = time.monotonic(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="blobgate-storm-") as tmp, \
            World(QUICK, Path(tmp)) as world:
        storms = _measure(world, count)
    table, targets = _table(storms, count)
    header = "\n".join([
        f"## Pull storm ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{time.monotonic() - started:.0f} s)", "", *machine.describe(),
        f"- 1-minute load average at the start {load_before:.2f}, at the end "
        f"{os.getloadavg()[0]:.2f}", f"- {machine.source_state()}", f"- command: `{command}`"])
    print(report.write([targets_table(targets), table], header, out))
    return 0 if all(target.met for target in targets) else 1
