"""Scenario ``warm``: warm blob GETs, S3 requests per warm GET, and blobgate's memory.

At each connection count blobgate (one worker, its default configuration: logs at
info, access and audit lines on), the registry's own redirect and the bare-aiohttp
floor answer the same rotating (token, blob) pairs after a warm-up, in interleaved
rounds (the median is kept), each pinned to the server core with wrk on the client
core. blobgate and the floor run on asyncio's own loop (blobgate's default) and, as a
second pair, on uvloop; at 64 connections also the floor on aiohttp's low-level server
and blobgate with its logs off. During blobgate's measured runs the bench
also counts S3 requests (moto's log), upstream requests and cache misses (blobgate's
/metrics), and samples its RSS.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from pathlib import Path

from bench import wrk
from bench.client import Client
from bench.gateway import DEFAULT_LOGGING, QUIET, Gateway
from bench.metrics import total
from bench.procstat import PeakRSS, hwm_mib, listen_overflows, rss_mib
from bench.report import Result, Table, Target, ratio
from bench.tools import SERVER_CPU
from bench.world import World
from bench.wrk import Load, describe_errors, spread

WARM_CONNECTIONS = 64
LOGS_OFF = "blobgate, logs off"  # log.level warning, access log off; only at 64 conns
LOW_LEVEL = "floor, low-level server"  # web.Server, as blobgate serves; only at 64 conns
UVLOOP = "blobgate, uvloop"
UVLOOP_FLOOR = "floor, uvloop"
SHARED = "blobgate, redis"  # redis.url set (replicas share caches); only at 64 conns
TARGETS = ("blobgate", "registry", "floor", LOW_LEVEL, UVLOOP, UVLOOP_FLOOR, LOGS_OFF, SHARED)
ONLY_AT_64 = (LOW_LEVEL, LOGS_OFF, SHARED)
BLOBGATE_COUNTERS: dict[str, tuple[str, dict[str, str]]] = {
    "cache misses": ("blobgate_cache_requests_total", {"result": "miss"}),
    "upstream requests": ("blobgate_upstream_responses_total", {}),
}


def median(loads: list[Load]) -> Load:
    """The run with the median throughput."""
    return sorted(loads, key=lambda load: load.rps)[len(loads) // 2]


def sample_redirect(base_url: str, pairs: Path) -> tuple[str, str]:
    """A real ``Location`` and digest from blobgate, for the floor to send."""
    path, token = pairs.read_text().splitlines()[0].split("\t")
    with Client(base_url) as client:
        status, headers, _ = client.get(path, token)
    if status != 307:
        raise RuntimeError(f"blobgate answered {status} instead of 307 for {path}")
    return headers["Location"], path.rsplit("/", 1)[1]


class Books:
    """Counts kept across the measured runs."""

    def __init__(self) -> None:
        self.gets: Counter[str] = Counter()
        self.s3: Counter[str] = Counter()
        self.blobgate: Counter[str] = Counter()
        self.memory: dict[str, float] = {}
        self.overflows: Counter[tuple[int, str]] = Counter()


def measure(world: World, gateway: Gateway, target: str, url: str, pairs: Path, level: int,
            books: Books) -> Load:
    """One measured wrk run, with the counters around it."""
    s3_before, overflows = len(world.stack.s3.requests()), listen_overflows()
    before = gateway.samples()
    with PeakRSS(gateway.pid) as peak:
        load = wrk.run(url, pairs, level, world.mode.duration_s)
    books.overflows[level, target] += listen_overflows() - overflows
    books.gets[target] += load.requests
    books.s3[target] += len(world.stack.s3.requests()) - s3_before
    if target == "blobgate":
        after = gateway.samples()
        for label, (name, labels) in BLOBGATE_COUNTERS.items():
            books.blobgate[label] += int(total(after, name, **labels)
                                         - total(before, name, **labels))
        key = f"peak VmRSS during {level}-connection runs"
        books.memory[key] = max(books.memory.get(key, 0.0), peak.peak_mib)
    return load


def run(world: World) -> Result:
    """Measure every connection count; return the speed, S3 and memory tables."""
    mode, books = world.mode, Books()
    cells: dict[tuple[int, str], list[Load]] = defaultdict(list)
    with contextlib.ExitStack() as running:
        gateway = running.enter_context(
            Gateway(world.stack, world.workdir, "warm", DEFAULT_LOGGING, cpus=SERVER_CPU))
        books.memory["idle after start"] = rss_mib(gateway.pid)
        registry = running.enter_context(world.redirecting_registry())
        location, digest = sample_redirect(gateway.url, world.pairs("warm-sample"))
        redirect = ("redirect", "--location", location, "--digest", digest)
        every = {
            "blobgate": gateway.url,
            "registry": registry.url,
            "floor": running.enter_context(world.floor("redirect", *redirect)),
            LOW_LEVEL: running.enter_context(
                world.floor("redirect-low-level", "--low-level", *redirect)),
            UVLOOP: running.enter_context(Gateway(world.stack, world.workdir, "warm-uvloop", {
                **DEFAULT_LOGGING, "server": {"event_loop": "uvloop"}}, cpus=SERVER_CPU)).url,
            UVLOOP_FLOOR: running.enter_context(
                world.floor("redirect-uvloop", "--loop", "uvloop", *redirect)),
            LOGS_OFF: running.enter_context(Gateway(world.stack, world.workdir, "warm-quiet",
                                                    QUIET, cpus=SERVER_CPU)).url,
            SHARED: running.enter_context(Gateway(world.stack, world.workdir, "warm-redis", {
                **DEFAULT_LOGGING, "redis": running.enter_context(world.redis("warm"))},
                cpus=SERVER_CPU)).url,
        }
        for level in mode.levels:
            urls = {target: url for target, url in every.items()
                    if level == WARM_CONNECTIONS or target not in ONLY_AT_64}
            pairs = world.pairs(f"warm-{level}")
            for url in urls.values():
                wrk.run(url, pairs, WARM_CONNECTIONS, mode.warm_s)
            books.memory.setdefault("idle after the first warm-up", rss_mib(gateway.pid))
            for _ in range(mode.rounds):
                for target, url in urls.items():
                    cells[level, target].append(
                        measure(world, gateway, target, url, pairs, level, books))
        books.memory["VmHWM at the end"] = hwm_mib(gateway.pid)
    return Result([speed_table(world, cells, books), s3_table(books), memory_table(books)],
                  targets(cells, books))


def speed_table(world: World, cells: dict[tuple[int, str], list[Load]], books: Books) -> Table:
    """req/s, latency and errors per connection count and target."""
    mode = world.mode
    table = Table(
        "Warm blob GETs (server on core 0, wrk on core 1)",
        ["connections", "target", "req/s", "req/s range", "p50 ms", "p99 ms", "errors",
         "blobgate ÷ this", "listen-queue overflows"],
    )
    for level in mode.levels:
        ours = median(cells[level, "blobgate"])
        for target in (t for t in TARGETS if (level, t) in cells):
            loads = cells[level, target]
            best = median(loads)
            table.add(level, target, f"{best.rps:,.0f}", spread(loads), f"{best.p50_ms:.2f}",
                      f"{best.p99_ms:.2f}", describe_errors(loads),
                      "—" if target == "blobgate" else ratio(ours.rps, best.rps),
                      books.overflows[level, target])
    table.notes += [
        f"{mode.tokens} distinct tokens over {len(world.blobs)} repositories and "
        f"{sum(map(len, world.blobs.values()))} blobs, rotated by wrk; fresh tokens and a "
        f"{mode.warm_s} s warm-up (64 connections) per connection count; median of "
        f"{mode.rounds} interleaved {mode.duration_s} s runs (req/s range: slowest and "
        "fastest of them).",
        "registry: distribution 2.8, S3 driver, redirects on, in-memory blob descriptor "
        "cache, log level warn, all threads on core 0. floor: constant 307 from a "
        "web.Application with one catch-all route, aiohttp on asyncio's loop, backlog 2048; "
        f"{LOW_LEVEL!r}: the same handler on aiohttp's low-level web.Server (no router), "
        "which is how blobgate serves; the uvloop rows: blobgate (server.event_loop: "
        "uvloop) and the floor on uvloop. blobgate: its default configuration "
        "(log.level info, access log on, audit.sink log: one line per request, stderr "
        f"to a file); {LOGS_OFF!r}: log.level warning, access log off; "
        f"{SHARED!r}: as blobgate, with redis.url set (the machine's Redis on loopback).",
        "errors: socket errors, responses slower than wrk's 2 s timeout (wrk leaves them out "
        "of the percentiles) and statuses other than 307, over all runs. listen-queue "
        "overflows: the kernel's TcpExt ListenOverflows during the runs (SYNs dropped "
        "because the server's accept queue was full; the client retries after 1 s, 3 s...).",
        "During blobgate's measured runs: "
        + ", ".join(f"{books.blobgate[label]} {label}" for label in BLOBGATE_COUNTERS) + ".",
    ]
    return table


def s3_table(books: Books) -> Table:
    """S3 requests moto logged per warm GET."""
    table = Table("S3 API calls per warm blob GET", ["target", "GETs", "S3 requests", "per GET"])
    for target in ("blobgate", "registry"):
        gets, calls = books.gets[target], books.s3[target]
        table.add(target, f"{gets:,}", calls, f"{calls / gets:.4f}" if gets else "n/a")
    table.notes.append("Counted from moto's request log around each measured run.")
    return table


def memory_table(books: Books) -> Table:
    """blobgate's resident memory at each point."""
    table = Table("blobgate memory (1 worker)", ["when", "MiB"])
    for when, mib in books.memory.items():
        table.add(when, f"{mib:.1f}")
    return table


def targets(cells: dict[tuple[int, str], list[Load]], books: Books) -> list[Target]:
    """The issue's warm-path targets, where this run measured them."""
    found = []
    if (64, "blobgate") in cells:
        ours = median(cells[64, "blobgate"])
        registry, floor = median(cells[64, "registry"]), median(cells[64, "floor"])
        quiet = median(cells[64, LOGS_OFF])
        found += [
            Target("default configuration ≥ 10x the registry (64 conns)",
                   ratio(ours.rps, registry.rps), ours.rps >= 10 * registry.rps),
            Target("default configuration ≥ 75% of the aiohttp floor (64 conns, asyncio)",
                   f"{ours.rps / floor.rps:.0%}", ours.rps >= 0.75 * floor.rps),
            Target("default configuration within 10% of logs off (64 conns)",
                   ratio(ours.rps, quiet.rps), ours.rps >= 0.9 * quiet.rps),
            Target("p99 ≤ 5 ms at 64 conns (default configuration)", f"{ours.p99_ms:.2f} ms",
                   ours.p99_ms <= 5),
        ]
        shared = median(cells[64, SHARED])
        found.append(Target("warm GETs with Redis configured ≥ 0.95x without (64 conns)",
                            ratio(shared.rps, ours.rps), shared.rps >= 0.95 * ours.rps))
        uvloop, uvloop_floor = median(cells[64, UVLOOP]), median(cells[64, UVLOOP_FLOOR])
        found.append(Target("uvloop: warm GETs ≥ 75% of the floor on uvloop (64 conns)",
                            f"{uvloop.rps / uvloop_floor.rps:.0%}",
                            uvloop.rps >= 0.75 * uvloop_floor.rps))
    for target in ("blobgate", UVLOOP):
        if (1000, target) in cells:
            errors = sum(load.errors for load in cells[1000, target])
            found.append(Target(f"zero errors at 1,000 conns ({target}, default logging)",
                                f"{errors} errors", errors == 0))
    calls = books.s3["blobgate"]
    found.append(Target("0 S3 calls per warm GET", f"{calls} in {books.gets['blobgate']:,} GETs",
                        calls == 0))
    return found
