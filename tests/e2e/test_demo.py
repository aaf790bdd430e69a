"""``blobgate demo --once`` runs the whole stack, reports what happened and cleans up."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from blobgate.devstack.demo import LAYER_SIZES
from blobgate.devstack.logs import json_objects

pytestmark = pytest.mark.e2e


def refuses_connections(url: str) -> bool:
    """True when nothing listens at ``url`` any more."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.usefixtures("demo_tools")
def test_demo_once_reports_offloaded_blobs_and_stops_everything(e2e_dir: Path) -> None:
    workdir = e2e_dir / "demo"
    blobs = len(LAYER_SIZES) + 1  # layers and config

    done = subprocess.run(
        [sys.executable, "-m", "blobgate", "demo", "--once", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{blobs} of {blobs} blob downloads were answered by blobgate with a 307" in done.stdout
    assert "the registry served 0 blob downloads itself" in done.stdout
    assert f"{blobs} of {blobs} pulled blobs match their sha256 digests" in done.stdout
    access = json_objects((workdir / "stack" / "blobgate.log").read_text())
    redirects = [e for e in access if e.get("logger") == "blobgate.audit" and e["status"] == 307]
    assert len(redirects) == blobs
    s3_log = (workdir / "stack" / "s3.log").read_text()
    for entry in redirects:
        assert re.search(rf"GET \S+/{entry['digest'][7:]}/data\?\S*X-Amz-Signature=", s3_log)
    gateway = re.search(r"through blobgate \((http://[^)]+)\)", done.stdout)
    assert gateway is not None
    assert refuses_connections(gateway[1])
