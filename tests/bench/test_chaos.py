"""CI version of the chaos run (``python -m bench chaos --fault 'rolling restart'``, two
replicas, one skopeo and one ctr loop per target): a rolling restart of blobgate
replicas behind HAProxy under real pulls, each with its own token and every blob
checked against its digest, a steady wrk load, and the same clients against the
registry as the control. The full run (every fault) is in RELIABILITY.md.

It asserts the issue's goals, never a time: no wrong bytes, no pull through blobgate
failed during the restart, none failed that the control completed, no audit record
lost; and that the replicas really were restarted and pulls really went through them.
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARIES = ("haproxy", "skopeo", "ctr", "containerd", "docker-registry", "wrk",
            "redis-server")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory: containerd's socket paths must stay under 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bg-chaos-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _row(tables: list[dict[str, Any]], title: str) -> dict[str, str]:
    table = next(t for t in tables if t["title"].startswith(title))
    (row,) = table["rows"]
    return dict(zip(table["columns"], row, strict=True))


@pytest.mark.timeout(300)
def test_rolling_restart_loses_no_pull(workdir: Path) -> None:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing or not glob.glob("/usr/lib/postgresql/*/bin"):
        pytest.skip(f"not installed: {', '.join(missing) or 'postgresql'}")
    out = workdir / "chaos.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "chaos", "--fault", "rolling restart", "--replicas",
         "2", "--skopeo-loops", "1", "--ctr-loops", "1", "--out", str(out), "--workdir",
         str(workdir)],
        cwd=ROOT, capture_output=True, text=True, timeout=290, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tables = json.loads(out.with_suffix(".json").read_text())
    pulls = _row(tables, "Chaos run: pulls")
    tried, ok, failed = pulls["pulls via blobgate (tried / ok / failed)"].split(" / ")
    assert int(tried) > 0, pulls
    assert (int(ok), failed) == (int(tried), "0"), pulls
    assert pulls["wrong blobs"] == "0"
    assert pulls["blobgate failures the control did not share"] == "0"
    answers = _row(tables, "Chaos run: blob requests")
    redirects = answers["blob answers (redirect / other)"].replace(",", "").split(" / ")[0]
    assert int(redirects) > 0
    wrk = answers["wrk blob GETs via blobgate (307 / other)"]
    assert wrk.split(" / ")[1] == "0", wrk
    rows, requests = answers["audit rows / blob requests"].replace(",", "").split(" / ")
    assert rows == requests
    logs = sorted((workdir / "replicas").glob("replica-*.log"))
    assert len(logs) == 2
    for log in logs:  # restarted in the window, then stopped at the end
        assert log.read_text().count('"message":"stopped"') == 2, log
