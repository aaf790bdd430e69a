"""The series blobgate really exports, for tests that check queries written elsewhere
(the Grafana dashboard, the alert rules) against them."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from blobgate.expiring import ExpiringCache
from blobgate.ops.metrics import Stats, StatsCollector


def exported() -> dict[str, set[str]]:
    """Sample names blobgate exports, each with the label names it carries."""
    stats = Stats()
    stats.observe("blob", "GET", "redirect", 0.001)
    for counter, key in ((stats.membership, ("upstream", "member")), (stats.upstream, "2xx"),
                         (stats.presign_failures, ("s3", "x")), (stats.fallbacks, "x"),
                         (stats.offloaded_bytes, "s3"),
                         (stats.audit, "written"), (stats.reloads, ("f", "ok")),
                         (stats.redirects, ("eu", "fallback"))):
        counter[key] += 1  # type: ignore[index]
    stats.reload_healthy["f"] = 1
    stats.feeds_loaded_at["aws"] = None
    stats.caches["token"] = ExpiringCache(1, lambda _v: 0.0)
    registry = CollectorRegistry()
    registry.register(StatsCollector(stats))
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


Matcher = tuple[str, str, str]  # label, operator, value


def selectors(expr: str) -> list[tuple[str, list[Matcher]]]:
    """Each ``blobgate_*`` series a PromQL expression selects, with its label matchers."""
    found = []
    for name, body in re.findall(r"(blobgate_\w+)(?:\{([^}]*)\})?", expr):
        found.append((name, re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', body or "")))
    return found
