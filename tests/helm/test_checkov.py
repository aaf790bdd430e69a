"""The chart under checkov: the default and Harbor renderings have no finding outside the
commented allowlist (checkov-allowlist.yaml), and every allowlist entry is still needed.

checkov (pinned, from PyPI) runs from a virtual environment of its own
(``install-checkov.sh``): it pins boto3 far below blobgate's S3 stack. Each rendering is
scanned by its own checkov run, once per session, all at once: checkov's graph checks
(a NetworkPolicy selecting the pods) would otherwise match objects of one rendering
with another's.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from support.helm import Chart, Rendered, installed

HERE = Path(__file__).parent
ALLOWLIST: list[dict[str, str]] = yaml.safe_load((HERE / "checkov-allowlist.yaml").read_text())
# A value that puts a Secret into the environment: what checkov must still catch.
SECRET_IN_ENV = {"extraEnv": [{"name": "DB_PASSWORD", "valueFrom": {
    "secretKeyRef": {"name": "harbor-database", "key": "POSTGRES_PASSWORD"}}}]}


class Finding(NamedTuple):
    """One failed check on one object (``kind`` is the first part of ``resource``)."""

    check: str
    kind: str
    resource: str


class Scan(NamedTuple):
    """What one checkov run reported for one rendering."""

    findings: set[Finding]
    summary: dict[str, Any]


def _scan_result(output: str) -> Scan:
    reports = json.loads(output)
    [report] = reports if isinstance(reports, list) else [reports]
    findings = {Finding(f["check_id"], f["resource"].split(".")[0], f["resource"])
                for f in report["results"]["failed_checks"]}
    return Scan(findings, report["summary"])


@pytest.fixture(scope="session")
def scans(chart: Chart, default: Rendered, harbor: Rendered,
          tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, Scan]:
    checkov = installed(HERE / "install-checkov.sh")
    renderings = {"default": default, "harbor": harbor,
                  "secret-in-env": chart.render(values=SECRET_IN_ENV)}
    root = tmp_path_factory.mktemp("checkov")
    runs = {}
    for name, rendered in renderings.items():
        (root / name).mkdir()
        (root / name / "chart.yaml").write_text(yaml.safe_dump_all(rendered.objects))
        runs[name] = subprocess.Popen(
            [str(checkov), "--directory", str(root / name), "--framework", "kubernetes",
             "--output", "json", "--quiet", "--compact", "--skip-download"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    results = {}
    for name, run in runs.items():
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode in (0, 1), f"checkov failed on {name}:\n{stderr}"
        results[name] = _scan_result(stdout)
    return results


def allowed(finding: Finding) -> bool:
    return any(e["check"] == finding.check and e["kind"] == finding.kind for e in ALLOWLIST)


@pytest.mark.parametrize("rendering", ["default", "harbor"])
def test_no_finding_outside_the_allowlist(scans: Mapping[str, Scan], rendering: str) -> None:
    scan = scans[rendering]
    assert scan.summary["parsing_errors"] == 0
    assert scan.summary["passed"] > 50  # checkov really read the objects
    assert sorted(f for f in scan.findings if not allowed(f)) == []


def test_every_allowlist_entry_is_still_needed(scans: Mapping[str, Scan]) -> None:
    found = scans["default"].findings | scans["harbor"].findings
    for entry in ALLOWLIST:
        assert entry["why"].strip()
        assert any((f.check, f.kind) == (entry["check"], entry["kind"]) for f in found), entry


def test_checkov_still_catches_a_secret_in_the_environment(scans: Mapping[str, Scan]) -> None:
    assert {f.check for f in scans["secret-in-env"].findings if not allowed(f)} == {"CKV_K8S_35"}

