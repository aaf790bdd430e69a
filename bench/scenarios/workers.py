"""Scenario ``workers``: ``server.workers`` 1 vs 2 on warm blob GETs at 64 connections.

Nothing is pinned here: the two workers get both cores, and wrk shares them (there is
no third core), so the ratio is what the machine gives, not the ideal; the CPU time
blobgate's processes used shows how much of the machine they had. Both gateways run
side by side and are measured in interleaved rounds. Each worker keeps its own caches,
so the warm-up is long enough for every worker to see every token and blob; cache
misses during the measured runs are reported to show it was.
"""

from __future__ import annotations

from collections import defaultdict

from bench import metrics, wrk
from bench.gateway import Gateway
from bench.procstat import PeakRSS, cpu_s, pss_mib, rss_mib
from bench.report import Result, Table, Target, ratio
from bench.scenarios.warm import median
from bench.world import World
from bench.wrk import describe_errors, spread

CONNECTIONS = 64


def _requests_per_worker(gateway: Gateway) -> list[int]:
    return [int(metrics.total(metrics.scrape(url), "blobgate_requests_total"))
            for url in gateway.metrics_urls]


def run(world: World) -> Result:
    """Measure one and two workers; return the comparison."""
    mode = world.mode
    loads: dict[int, list[wrk.Load]] = defaultdict(list)
    peak: dict[int, float] = defaultdict(float)
    misses: dict[int, float] = defaultdict(float)
    busy: dict[int, list[float]] = defaultdict(list)  # cores blobgate kept busy, per run
    with (Gateway(world.stack, world.workdir, "workers-1") as one,
          Gateway(world.stack, world.workdir, "workers-2", {"server": {"workers": 2}}) as two):
        gateways = {1: one, 2: two}
        idle = {n: (rss_mib(g.pid), pss_mib(g.pid)) for n, g in gateways.items()}
        pairs = world.pairs("workers")
        for gateway in gateways.values():
            wrk.run(gateway.url, pairs, CONNECTIONS, 2 * mode.warm_s, cpus=None)
        split_before = _requests_per_worker(two)
        for _ in range(mode.rounds):
            for n, gateway in gateways.items():
                before = gateway.counter("blobgate_cache_requests_total", result="miss")
                cpu_before = cpu_s(gateway.pid)
                with PeakRSS(gateway.pid) as sampled:
                    loads[n].append(wrk.run(gateway.url, pairs, CONNECTIONS, mode.duration_s,
                                            cpus=None))
                busy[n].append((cpu_s(gateway.pid) - cpu_before) / loads[n][-1].duration_s)
                peak[n] = max(peak[n], sampled.peak_mib)
                misses[n] += gateway.counter("blobgate_cache_requests_total",
                                             result="miss") - before
        split = [after - b for after, b in zip(_requests_per_worker(two), split_before,
                                               strict=True)]
    table = Table(
        f"server.workers scaling (warm GETs, {CONNECTIONS} connections, nothing pinned)",
        ["workers", "req/s", "req/s range", "p50 ms", "p99 ms", "errors", "÷ 1 worker",
         "cores busy", "req/s per busy core", "RSS idle MiB", "PSS idle MiB",
         "peak RSS under load MiB", "cache misses while measured"],
    )
    base = median(loads[1])
    for n in (1, 2):
        best = median(loads[n])
        cores = sorted(busy[n])[len(busy[n]) // 2]
        table.add(n, f"{best.rps:,.0f}", spread(loads[n]), f"{best.p50_ms:.2f}",
                  f"{best.p99_ms:.2f}", describe_errors(loads[n]), ratio(best.rps, base.rps),
                  f"{cores:.2f}", f"{best.rps / cores:,.0f}" if cores else "n/a",
                  f"{idle[n][0]:.1f}", f"{idle[n][1]:.1f}", f"{peak[n]:.1f}", int(misses[n]))
    shares = ", ".join(f"{count / max(sum(split), 1):.0%}" for count in split)
    table.notes += [
        f"Requests served per worker during the measured runs: {shares} (SO_REUSEPORT).",
        "cores busy: CPU time (user + system) of blobgate's processes during a run ÷ its "
        "length (median of the runs); the rest of the two cores went to wrk and the kernel.",
        "With 2 workers, memory is summed over the parent and both workers; RSS counts the "
        "pages they share after the fork in each of them, PSS splits them.",
        f"Median of {mode.rounds} interleaved {mode.duration_s} s runs after a "
        f"{2 * mode.warm_s} s warm-up each.",
    ]
    scaled = median(loads[2]).rps / base.rps if base.rps else 0.0
    return Result([table], [Target("2 workers ≥ 1.7x one (64 conns)", f"{scaled:.2f}x",
                                   scaled >= 1.7)])
