"""CI smoke test of the benchmark harness (``python -m bench run --quick``, ``bench
signing``, ``bench instructions --quick``).

It checks that the quick modes run end to end and report every expected row with no
errors. It never asserts on speed: CI machines are shared and noisy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("wrk", "nginx", "docker-registry")


def _tables(out: Path) -> dict[str, dict[str, Any]]:
    tables = json.loads(out.with_suffix(".json").read_text())
    return {table["title"].split(" (")[0]: table for table in tables}


def _column(table: dict[str, Any], name: str) -> list[str]:
    index = table["columns"].index(name)
    return [row[index] for row in table["rows"]]


@pytest.mark.timeout(180)
def test_quick_run_reports_every_row_without_errors(tmp_path: Path) -> None:
    missing = [binary for binary in PACKAGES if shutil.which(binary) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed; install with: "
                    f"apt-get install -y {' '.join(missing)}")
    out = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--quick", "--only", "warm", "--only", "stream",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=170, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert out.read_text().startswith("## Results (quick run")
    tables = _tables(out)

    warm = tables["Warm blob GETs"]
    assert [row[:2] for row in warm["rows"]] == [
        [connections, target]
        for connections in ("1", "16")
        for target in ("blobgate", "registry", "floor", "blobgate, uvloop", "floor, uvloop")
    ]
    assert set(_column(warm, "errors")) == {"0"}
    assert _column(tables["S3 API calls per warm blob GET"], "target") == ["blobgate", "registry"]
    assert _column(tables["blobgate memory"], "when")[0] == "idle after start"

    single = next(table for title, table in tables.items() if title.startswith("Streaming"))
    assert _column(single, "path") == [
        "blobgate", "nginx proxy_pass", "aiohttp relay floor", "origin alone"
    ]
    assert set(_column(single, "errors")) == {"0"}
    together = next(table for title, table in tables.items() if "simultaneous" in title)
    assert _column(together, "errors") == ["0"]


@pytest.mark.timeout(120)
def test_signing_cost_reports_every_backend() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "signing", "--count", "20"],
                          capture_output=True, text=True, cwd=ROOT, timeout=110, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    backends = {row.split(" | ")[0].removeprefix("| ").split(" ")[0] for row in rows}
    assert backends == {"s3", "azure", "gcs", "cloudfront"}
    for row in rows:
        assert float(row.split(" | ")[1]) > 0


@pytest.mark.timeout(300)
def test_instruction_counts_report_every_target() -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed; install with: apt-get install -y valgrind")
    done = subprocess.run([sys.executable, "-m", "bench", "instructions", "--quick"],
                          capture_output=True, text=True, cwd=ROOT, timeout=290, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row[0].removeprefix("| ") for row in rows] == [
        "blobgate (default configuration)", "blobgate, logs off", "blobgate, redis",
        "floor (constant 307)"]
    assert all(int(row[1].replace(",", "")) > 0 for row in rows)
