"""The chart's PrometheusRule: the alert rules file's groups, with the overrides the
values allow, valid for the Prometheus Operator and for promtool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from support.helm import Chart, Rendered, Schemas
from support.prometheus import RULES, promtool

OVERRIDES = {"prometheusRule": {
    "enabled": True, "namespace": "monitoring", "labels": {"release": "kube-prometheus-stack"},
    "ruleLabels": {"team": "registry", "severity": "page"},
    "runbookBaseURL": "https://git.example.com/platform/blobgate/-/blob/main/",
}}


@pytest.fixture(scope="module")
def rule(chart: Chart) -> dict[str, Any]:
    return chart.render(values={"prometheusRule": {"enabled": True}}).one("PrometheusRule")


def test_off_by_default(default: Rendered) -> None:
    assert default.all("PrometheusRule") == []


def test_it_renders_the_rules_file(rule: dict[str, Any], schemas: Schemas) -> None:
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert rule["metadata"]["namespace"] == "registry"
    schemas.validate(rule)


def test_promtool_accepts_the_rendered_spec(rule: dict[str, Any], tmp_path: Path) -> None:
    rendered = tmp_path / "rendered-rules.yaml"
    rendered.write_text(yaml.safe_dump(rule["spec"]))
    result = promtool("check", "rules", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr


def test_labels_namespace_and_runbook_links_are_values(chart: Chart, schemas: Schemas) -> None:
    rule = chart.render(values=OVERRIDES).one("PrometheusRule")
    schemas.validate(rule)
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    source = yaml.safe_load(RULES.read_text())["groups"]
    assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in source]
    for group, original in zip(rule["spec"]["groups"], source, strict=True):
        for alert, plain in zip(group["rules"], original["rules"], strict=True):
            assert alert["expr"] == plain["expr"]
            assert alert["labels"] == {**plain["labels"], "team": "registry", "severity": "page"}
            assert alert["annotations"]["runbook_url"] == (
                "https://git.example.com/platform/blobgate/-/blob/main/"
                + plain["annotations"]["runbook_url"])
