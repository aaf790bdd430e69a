"""The alert rules file and promtool (Debian package ``prometheus``), for the tests that
check the rules themselves and the chart's PrometheusRule made from them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "helm" / "blobgate" / "alerts" / "blobgate-rules.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool (skipping the test when it is not installed)."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is missing: apt-get install -y prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=300,
                          check=False)
