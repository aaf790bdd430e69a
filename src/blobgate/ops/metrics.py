"""Prometheus metrics, paid for at scrape time rather than on every request.

The request path only bumps plain integers in ``Stats``; ``StatsCollector`` turns them
into Prometheus families when ``/metrics`` is scraped. Label values are drawn from
small fixed sets (never a repository name or a digest), so series stay bounded.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from blobgate.expiring import ExpiringCache

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        running, out = 0, []
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


@dataclass
class Stats:
    """Every counter blobgate keeps; mutated in place by the code that knows the fact."""

    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    latency: dict[str, _Histogram] = field(default_factory=dict)
    in_flight: int = 0
    offloaded_bytes: Counter[str] = field(default_factory=Counter)
    streamed_bytes: int = 0
    membership: Counter[tuple[str, str]] = field(default_factory=Counter)
    upstream: Counter[str] = field(default_factory=Counter)
    upstream_checks: _Histogram = field(default_factory=_Histogram)
    presign_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    refused_redirects: Counter[str] = field(default_factory=Counter)
    audit: Counter[str] = field(default_factory=Counter)
    reloads: Counter[tuple[str, str]] = field(default_factory=Counter)
    reload_healthy: dict[str, int] = field(default_factory=dict)
    caches: dict[str, ExpiringCache[Any, Any]] = field(default_factory=dict)
    shared: Counter[tuple[str, str]] = field(default_factory=Counter)
    shared_errors: Counter[str] = field(default_factory=Counter)
    shared_rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    invalidations: Counter[str] = field(default_factory=Counter)
    warmup_refused: Counter[str] = field(default_factory=Counter)
    redirects: Counter[tuple[str, str]] = field(default_factory=Counter)
    feeds_loaded_at: dict[str, float | None] = field(default_factory=dict)

    def observe(self, route: str, method: str, outcome: str, seconds: float) -> None:
        """Record one finished request."""
        method = method if method in METHODS else "OTHER"
        self.requests[route, method, outcome] += 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = _Histogram()
        histogram.observe(seconds)

    def upstream_status(self, status: int | None) -> None:
        """Count one upstream answer by status class (``None``: no answer)."""
        self.upstream["error" if status is None else f"{status // 100}xx"] += 1


def _counter(name: str, doc: str, labels: list[str], values: Counter[Any]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


class StatsCollector(Collector):
    """Renders ``Stats`` as Prometheus metric families on each scrape."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        yield _counter("blobgate_requests", "Requests by route, method and outcome.",
                       ["route", "method", "outcome"], s.requests)
        latency = HistogramMetricFamily(
            "blobgate_request_duration_seconds", "Time to answer a request.", labels=["route"]
        )
        for route, histogram in sorted(s.latency.items()):
            latency.add_metric([route], histogram.buckets(), histogram.total)
        yield latency
        yield GaugeMetricFamily("blobgate_requests_in_flight", "Requests being answered.",
                                value=s.in_flight)
        yield _counter("blobgate_offloaded_bytes",
                       "Bytes of blobs clients fetched from storage by redirect, by what "
                       "signed the URL.", ["backend"], s.offloaded_bytes)
        yield CounterMetricFamily("blobgate_streamed_bytes",
                                  "Response bytes blobgate relayed itself.",
                                  value=s.streamed_bytes)
        yield _counter("blobgate_membership_checks", "Membership checks by source and result.",
                       ["source", "result"], s.membership)
        yield _counter("blobgate_upstream_responses", "Upstream answers by status class.",
                       ["status_class"], s.upstream)
        checks = HistogramMetricFamily(
            "blobgate_upstream_check_duration_seconds",
            "Time the registry took to answer blobgate's own requests (membership, sizes,"
            " readiness).",
        )
        checks.add_metric([], s.upstream_checks.buckets(), s.upstream_checks.total)
        yield checks
        yield _counter("blobgate_presign_failures", "Presigning failures by backend and reason.",
                       ["backend", "reason"], s.presign_failures)
        yield _counter("blobgate_fallbacks", "Blob requests not redirected, by reason.",
                       ["reason"], s.fallbacks)
        yield _counter("blobgate_refused_redirects",
                       "Registry redirects the proxy backend would not follow, by reason.",
                       ["reason"], s.refused_redirects)
        yield _counter("blobgate_audit_records", "Audit records by result.",
                       ["result"], s.audit)
        yield _counter("blobgate_reloads", "Reloads of watched files by file and result.",
                       ["file", "result"], s.reloads)
        healthy = GaugeMetricFamily(
            "blobgate_reload_healthy",
            "1 when the watched file on disk loaded; 0 when it is bad and the old one is kept.",
            labels=["file"],
        )
        for name, value in sorted(s.reload_healthy.items()):
            healthy.add_metric([name], value)
        yield healthy
        yield _counter("blobgate_shared_cache_requests", "Redis lookups by cache and result.",
                       ["cache", "result"], s.shared)
        yield _counter("blobgate_shared_cache_errors", "Failed Redis calls by operation.",
                       ["op"], s.shared_errors)
        yield _counter("blobgate_shared_rejected",
                       "Shared values and invalidation messages not believed (no valid MAC,"
                       " or not parsable), by cache (channel: messages) and reason.",
                       ["cache", "reason"], s.shared_rejected)
        yield _counter("blobgate_shared_cache_invalidations",
                       "Invalidations received from the replicas' channel, by kind.",
                       ["op"], s.invalidations)
        yield _counter("blobgate_warmup_refused",
                       "Image manifests warm-up learnt nothing from, by reason.",
                       ["reason"], s.warmup_refused)
        yield _counter("blobgate_redirects",
                       "Blob redirects by location and reason (the rule that matched, "
                       "'default', or 'fallback' when an earlier location lacked the blob).",
                       ["location", "reason"], s.redirects)
        yield self._feed_ages()
        yield from self._caches()

    def _feed_ages(self) -> Metric:
        ages = GaugeMetricFamily("blobgate_ip_ranges_age_seconds",
                                 "Seconds since the IP-range feed in force was read (+Inf: "
                                 "never read).", labels=["provider"])
        now = time.time()
        for provider, loaded_at in sorted(self._stats.feeds_loaded_at.items()):
            ages.add_metric([provider], math.inf if loaded_at is None else now - loaded_at)
        return ages

    def _caches(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily("blobgate_cache_requests", "Cache lookups by result.",
                                      labels=["cache", "result"])
        evictions = CounterMetricFamily("blobgate_cache_evictions",
                                        "Entries dropped to make room.", labels=["cache"])
        entries = GaugeMetricFamily("blobgate_cache_entries", "Entries held.", labels=["cache"])
        for name, cache in sorted(self._stats.caches.items()):
            lookups.add_metric([name, "hit"], cache.hits)
            lookups.add_metric([name, "miss"], cache.misses)
            evictions.add_metric([name], cache.evictions)
            entries.add_metric([name], len(cache))
        yield from (lookups, evictions, entries)


STATS = web.AppKey("stats", Stats)
