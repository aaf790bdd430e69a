"""``./dev`` run on a copy of the checkout, with the uv that ``./dev`` bootstrapped for this
run (``BLOBGATE_UV``), so a test never writes into the checkout itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def dev(checkout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``./dev ARGS`` in ``checkout``; its exit status and output."""
    uv = os.environ.get("BLOBGATE_UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("no uv: run the tests with ./dev test, which bootstraps it")
    env = {**os.environ, "BLOBGATE_UV_DIR": str(Path(uv).parents[1])}
    return subprocess.run(["bash", str(checkout / "dev"), *args], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
