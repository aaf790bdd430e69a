"""The alert rules: valid for Prometheus, each alert proven by promtool unit tests to fire
on the trouble it names and to stay quiet otherwise, documented with a runbook, and
querying only series and label values blobgate really exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.prometheus import RULES, promtool
from support.series import exported, selectors

HERE = Path(__file__).parent
UNIT_TESTS = sorted(HERE.glob("*.test.yaml"))
REPO = HERE.parents[1]
README = REPO / "README.md"
SCRAPE_LABELS = {"namespace", "job", "instance", "pod", "le"}


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rules_file_passes_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == [str(Path("..", "..", RULES.relative_to(REPO)))]
        for test in document["tests"]:
            for case in test["alert_rule_test"]:
                (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {a["alert"] for a in alerts()}
    assert firing == names
    assert quiet == names


def readme_anchors() -> set[str]:
    """GitHub's anchors for the README's headings."""
    headings = re.findall(r"^#+ (.+)$", README.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_every_alert_says_what_to_check_and_links_its_runbook(alert: dict[str, Any]) -> None:
    assert alert["alert"].startswith("Blobgate")
    assert alert["labels"]["severity"] in {"warning", "critical"}
    annotations = alert["annotations"]
    assert annotations["summary"].startswith("{{ $labels.job }}: ")
    assert "Check " in annotations["description"]
    page, _, anchor = annotations["runbook_url"].partition("#")
    assert page == "README.md"
    assert anchor == alert["alert"].lower()
    assert anchor in readme_anchors()


def known_label_values() -> set[str]:
    """String literals of blobgate's code, and the values the README's metrics table
    lists (some are built, like status classes)."""
    code = "".join(p.read_text() for p in (REPO / "src" / "blobgate").rglob("*.py"))
    return set(re.findall(r'"([\w.-]+)"', code)) | set(re.findall(r"`([\w.-]+)`",
                                                                    README.read_text()))


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_alerts_query_real_series_and_values(alert: dict[str, Any]) -> None:
    series = exported()
    values = known_label_values()
    found = selectors(alert["expr"])
    assert found
    for name, matchers in found:
        assert name in series, f"{name} is not exported"
        for label, operator, pattern in matchers:
            assert label in series[name] | SCRAPE_LABELS, f"{name} has no label {label}"
            if operator in ("=", "=~"):  # a value never produced would select nothing
                for value in pattern.split("|"):
                    assert value in values, f"{label}={value!r} is never produced"
    for group in re.findall(r"by \(([^)]*)\)", alert["expr"]):
        labels = {part.strip() for part in group.split(",")}
        assert labels <= SCRAPE_LABELS | set().union(*(series[n] for n, _ in found))
