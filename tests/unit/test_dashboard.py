"""The Grafana dashboard only queries metrics blobgate really exports, with real labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from blobgate.expiring import ExpiringCache
from blobgate.metrics import Stats, StatsCollector

DASHBOARD = Path(__file__).parents[2] / "helm" / "blobgate" / "dashboards" / "blobgate.json"


def exported() -> dict[str, set[str]]:
    """Sample names blobgate exports, each with the label names it carries."""
    stats = Stats()
    stats.observe("blob", "GET", "redirect", 0.001)
    for counter, key in ((stats.membership, ("upstream", "member")), (stats.upstream, "2xx"),
                         (stats.presign_failures, ("s3", "x")), (stats.fallbacks, "x"),
                         (stats.offloaded_bytes, "s3"),
                         (stats.audit, "written"), (stats.reloads, ("f", "ok"))):
        counter[key] += 1  # type: ignore[index]
    stats.reload_healthy["f"] = 1
    stats.caches["token"] = ExpiringCache(1, lambda _v: 0.0)
    registry = CollectorRegistry()
    registry.register(StatsCollector(stats))
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_every_query_uses_exported_metrics_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 13
    for expr in exprs:
        for name, selector in re.findall(r"(blobgate_\w+)(?:\{([^}]*)\})?", expr):
            assert name in known, f"{name} is not exported"
            for label in re.findall(r"(\w+)=~?\"", selector or ""):
                assert label == "job" or label in known[name], f"{name} has no label {label}"
        for label in re.findall(r"by \(([^)]*)\)", expr):
            for each in (part.strip() for part in label.split(",")):
                assert each == "le" or any(each in labels for labels in known.values())


def test_the_panels_issue_5_asks_for_are_there() -> None:
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert {"Redirect ratio", "Offloaded", "Latency percentiles", "Cache hit ratio",
            "Errors"} <= titles
