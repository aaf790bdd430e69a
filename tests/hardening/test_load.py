"""Load against a real ``blobgate serve`` process: many concurrent clients, slow clients,
and the upstream connection bound.

The gateway runs as a subprocess (``python -m blobgate serve``) in front of a stand-in
registry process, signing for the moto S3 server. The short form (200 clients for 5 s)
runs by default; ``BLOBGATE_FULL_LOAD=1`` runs the full form (1,000 clients for 60 s),
whose figures are recorded in RELIABILITY.md. Assertions are about correctness and
memory, never about speed: zero errors, every answer a 307 with a URL, RSS growth
bounded, and file descriptors given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from blobgate.config import UpstreamConfig
from blobgate.devstack.s3 import S3Server
from hardening.served import ServedGateway, StandinProcess

from support.gateway import GatewayFactory
from support.tokens import Signer

FULL = os.environ.get("BLOBGATE_FULL_LOAD") == "1"
CLIENTS, DURATION_S = (1000, 60.0) if FULL else (200, 5.0)
RSS_GROWTH_LIMIT = 100 * 1024 * 1024
REPOSITORIES = ("load/one", "load/two")
BIG_BLOB_BYTES = 32 * 1024 * 1024


@dataclass
class Loaded:
    """The served gateway and what it serves."""

    gateway: ServedGateway
    standin: StandinProcess
    paths: list[str]  # /v2/<name>/blobs/<digest> of the small blobs
    big_path: str  # a 32 MiB blob, for slow readers


@pytest.fixture(scope="module")
def loaded(
    s3_server: S3Server, put_blob: Callable[..., str], bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Loaded]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    workdir = tmp_path_factory.mktemp("load")
    blobs: dict[tuple[str, str], bytes] = {}
    for name in REPOSITORIES:
        for _ in range(2):
            data = os.urandom(64 * 1024)
            blobs[(name, put_blob(data))] = data
    big = os.urandom(BIG_BLOB_BYTES)
    big_digest = put_blob(big)
    blobs[("load/big", big_digest)] = big
    with StandinProcess(workdir / "standin", blobs) as standin, ServedGateway(
        workdir / "gateway", standin.url, bundle, s3_server.endpoint_url,
        server={"keepalive_timeout_s": 5},
    ) as gateway:
        paths = [f"/v2/{n}/blobs/{d}" for (n, d) in blobs if n != "load/big"]
        yield Loaded(gateway, standin, paths, f"/v2/load/big/blobs/{big_digest}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def pull_token(signer: Signer) -> str:
    """A distinct token (fresh ``jti``) granting pull on every load repository."""
    return signer.token(access=[{"type": "repository", "name": n, "actions": ["pull"]}
                                for n in REPOSITORIES])


@dataclass
class Tally:
    """What the clients saw."""

    redirects: int = 0
    other_statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.redirects + sum(self.other_statuses.values()) + sum(self.errors.values())

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


async def hammer(base_url: str, paths: list[str], tokens: list[str], duration_s: float,
                 tally: Tally) -> None:
    """One aiohttp session (one connection) per token, each pulling until the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration_s

    async def client(index: int, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            turn = index
            while loop.time() < deadline:
                started = time.perf_counter()
                url = base_url + paths[turn % len(paths)]
                turn += 1
                try:
                    async with session.get(url, headers=headers,
                                           allow_redirects=False) as response:
                        await response.read()
                        location = response.headers.get("Location", "")
                        if response.status == 307 and "X-Amz-Signature=" in location:
                            tally.redirects += 1
                        else:
                            tally.other_statuses[response.status] += 1
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    tally.errors[type(exc).__name__] += 1
                tally.latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client(i, t) for i, t in enumerate(tokens)))


async def sample_rss(gateway: ServedGateway, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], gateway.rss_bytes())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.1)


@pytest.mark.timeout(600)
async def test_concurrent_clients_all_get_redirects_in_bounded_memory(
    loaded: Loaded, signer: Signer
) -> None:
    gateway = loaded.gateway
    tokens = [pull_token(signer) for _ in range(CLIENTS)]
    assert len(set(tokens)) == CLIENTS
    # Warm-up: membership, and each token confirmed with the registry once per repository
    # (as a pull's manifest request would), which also fills the upstream pool.
    warm = Tally()
    await hammer(gateway.url, loaded.paths, tokens, 0.5, warm)
    assert warm.redirects >= CLIENTS
    assert warm.other_statuses == Counter()
    fds_before, rss_before = gateway.open_fds(), gateway.rss_bytes()
    cpu_before = gateway.cpu_seconds()
    peak, stop = [rss_before], asyncio.Event()
    sampler = asyncio.create_task(sample_rss(gateway, peak, stop))
    tally = Tally()
    started = time.monotonic()
    try:
        await hammer(gateway.url, loaded.paths, tokens, DURATION_S, tally)
    finally:
        stop.set()
        await sampler
    elapsed = time.monotonic() - started
    rss_after = gateway.rss_bytes()
    gateway_cpu = gateway.cpu_seconds() - cpu_before
    summary = {
        "clients": CLIENTS, "duration_s": round(elapsed, 1), "requests": tally.total,
        "req_per_s": round(tally.total / elapsed), "redirects": tally.redirects,
        "other_statuses": dict(tally.other_statuses), "errors": dict(tally.errors),
        "p50_ms": round(tally.percentile(0.5) * 1000, 1),
        "p99_ms": round(tally.percentile(0.99) * 1000, 1),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_peak_mib": round(peak[0] / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1), "fds_before": fds_before,
        "gateway_cpu_s": round(gateway_cpu, 1),
        "gateway_cpu_share": round(gateway_cpu / elapsed, 2),
        "gateway_cpu_us_per_request": round(gateway_cpu / max(tally.total, 1) * 1e6),
    }
    print("\nLOAD", json.dumps(summary))
    assert tally.errors == Counter()
    assert tally.other_statuses == Counter()
    assert tally.redirects == tally.total
    assert tally.redirects >= CLIENTS  # every client got through at least once
    assert rss_after - rss_before < RSS_GROWTH_LIMIT
    assert peak[0] - rss_before < RSS_GROWTH_LIMIT
    # Clients are gone: their connections (file descriptors) are given back.
    await eventually(lambda: gateway.open_fds() <= fds_before + 10)


async def trickle(port: int, stop: asyncio.Event, closed: list[float], interval_s: float = 0.5,
                  ) -> None:
    """Slowloris: a request head sent one byte per ``interval_s``, never finished."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    head = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 10_000
    try:
        for byte in head:
            if stop.is_set():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1024), interval_s) == b"":
                    closed.append(time.monotonic() - started)
                    return
    except ConnectionError:
        closed.append(time.monotonic() - started)
    finally:
        writer.close()


async def slow_read(port: int, path: str, token: str, stop: asyncio.Event,
                    received: list[int], index: int) -> None:
    """A client downloading through blobgate at 8 KiB per 0.5 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=8192)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                 "Connection: close\r\n\r\n".encode())
    await writer.drain()
    try:
        while not stop.is_set():
            chunk = await reader.read(8192)
            if not chunk:
                return
            received[index] += len(chunk)
            await asyncio.sleep(0.5)
    finally:
        writer.close()


@asynccontextmanager
async def running(*tasks: asyncio.Task[None]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_slow_clients_do_not_starve_normal_ones(loaded: Loaded, signer: Signer) -> None:
    """Slowloris connections and slow body readers (a 32 MiB blob passed through to
    clients that read 16 KiB/s) are open while normal clients pull: every normal pull
    succeeds, and the slow readers do not make the gateway buffer their blobs."""
    gateway = loaded.gateway
    stop = asyncio.Event()
    closed: list[float] = []
    received = [0] * 5
    # An unverifiable token: blobgate passes the GET through and streams the registry's bytes.
    tasks = [asyncio.create_task(trickle(gateway.port, stop, closed)) for _ in range(5)]
    tasks += [asyncio.create_task(slow_read(gateway.port, loaded.big_path, "not-a-jwt", stop,
                                            received, i)) for i in range(5)]
    rss_before = gateway.rss_bytes()
    async with running(*tasks):
        await asyncio.sleep(1.0)
        tally = Tally()
        await hammer(gateway.url, loaded.paths, [pull_token(signer) for _ in range(50)], 3.0,
                     tally)
        rss_during = gateway.rss_bytes()
        stop.set()
    assert tally.errors == Counter()
    assert tally.other_statuses == Counter()
    assert tally.redirects >= 50
    assert all(0 < n < BIG_BLOB_BYTES for n in received), received  # really slow, still open
    # Five 32 MiB blobs were not pulled into memory for the slow readers.
    assert rss_during - rss_before < RSS_GROWTH_LIMIT


async def test_slowloris_connections_are_closed(loaded: Loaded) -> None:
    """server.keepalive_timeout_s (5 s here) bounds how long a request head may take."""
    stop = asyncio.Event()
    closed: list[float] = []
    tasks = [asyncio.create_task(trickle(loaded.gateway.port, stop, closed)) for _ in range(3)]
    async with running(*tasks):
        # A trickle task returns as soon as blobgate closes its connection.
        await asyncio.wait(tasks, timeout=10.0)
        stop.set()
    assert len(closed) == 3, f"{len(closed)} of 3 slowloris connections closed within 10 s"


# -- the upstream connection pool ---------------------------------------------------------------


@dataclass
class CountingRegistry:
    """A minimal HTTP/1.1 keep-alive server that answers after a pause and counts the
    connections open at once, by the method of their first request (blobgate's checks
    are HEADs, the relayed requests here GETs)."""

    delay_s: float = 0.05
    open: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    requests: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind = None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if kind is None:
                    kind = head.split(b" ", 1)[0].decode()
                    self.open[kind] += 1
                    self.peak[kind] = max(self.peak[kind], self.open[kind])
                self.requests += 1
                await asyncio.sleep(self.delay_s)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                             b"Content-Type: text/plain\r\n\r\n")
                if not head.startswith(b"HEAD "):
                    writer.write(b"ok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if kind is not None:
                self.open[kind] -= 1
            writer.close()


async def test_max_connections_bounds_upstream_connections(
    gateway: GatewayFactory, signer: Signer, put_blob: Callable[..., str],
) -> None:
    """Relayed requests and blobgate's own checks each stay within their own pool."""
    digests = [put_blob(f"blob {i}".encode()) for i in range(60)]  # in S3: redirectable
    registry = CountingRegistry()
    server = await asyncio.start_server(registry.handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        client = await gateway(upstream=UpstreamConfig(url=url, max_connections=4, timeout_s=30,
                                                       check_max_connections=2))
        token = signer.token("library/a")

        async def one(i: int) -> int:
            if i % 2:
                path = f"/v2/library/a/blobs/{digests[i]}"  # a membership HEAD upstream
                response = await client.get(path, headers={"Authorization": f"Bearer {token}"},
                                            allow_redirects=False)
            else:
                response = await client.get(f"/v2/library/a/tags/list?n={i}")
            await response.read()
            return response.status

        statuses = await asyncio.gather(*(one(i) for i in range(60)))
        assert set(statuses) <= {200, 307}
        assert statuses.count(307) == 30
        assert registry.requests == 60
        # Each bound was reached, never exceeded.
        assert registry.peak == Counter({"GET": 4, "HEAD": 2})
    finally:
        server.close()
        await server.wait_closed()
