"""The Grafana dashboard only queries metrics blobgate really exports, with real labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from support.prometheus import RULES
from support.series import exported, selectors

DASHBOARD = Path(__file__).parents[2] / "helm" / "blobgate" / "dashboards" / "blobgate.json"


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


def test_each_location_and_feed_has_a_series() -> None:
    panels = {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"]}
    per_location = panels["Redirects per location"]["targets"]
    assert per_location[0]["expr"].startswith("sum by (location) (rate(blobgate_redirects_total")
    assert per_location[0]["legendFormat"] == "{{location}}"
    ages = panels["IP-range feed age"]["targets"]
    assert "blobgate_ip_ranges_age_seconds" in ages[0]["expr"]
    assert "by (provider)" in ages[0]["expr"]


def test_unusual_access_panels_show_what_the_access_alerts_watch() -> None:
    """Each series the unusual-access alerts select (its matchers other than job) is drawn
    by an "Unusual access" panel, so the dashboard shows what an alert fired on."""
    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"]
              if p["title"].startswith("Unusual access")]
    drawn = {(name, frozenset(m for m in matchers if m[0] != "job"))
             for p in panels for t in p["targets"] for name, matchers in selectors(t["expr"])}
    group = next(g for g in yaml.safe_load(RULES.read_text())["groups"]
                 if g["name"] == "blobgate-access")
    watched = {(name, frozenset(matchers))
               for rule in group["rules"] for name, matchers in selectors(rule["expr"])}
    assert len(watched) == 3
    assert watched <= drawn
