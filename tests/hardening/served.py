"""``blobgate serve`` as a real subprocess, with a stand-in registry process behind it.

Both are ``blobgate.devstack.procs.Process`` children in their own session, so a test that
fails still stops them (use them as context managers). The gateway's pid is the Python
process itself, so its memory and file descriptors can be read from ``/proc``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from blobgate.devstack.gateway import GatewayProcess, dev_environment
from blobgate.devstack.procs import Process, free_port

from support.gateway import BUCKET
from support.tokens import ISSUER, SERVICE

TESTS_DIR = Path(__file__).resolve().parents[1]


def _clean_env() -> dict[str, str]:
    pythonpath = os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])
    return dev_environment({"PYTHONPATH": pythonpath})


class StandinProcess:
    """``hardening.standin_process`` on a free loopback port."""

    def __init__(self, workdir: Path, blobs: dict[tuple[str, str], bytes],
                 head_redirects: bool = False) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        entries = []
        for index, ((name, digest), data) in enumerate(blobs.items()):
            path = workdir / f"blob-{index}"
            path.write_bytes(data)
            entries.append({"name": name, "digest": digest, "file": str(path)})
        listing = workdir / "blobs.json"
        listing.write_text(json.dumps(entries))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "hardening.standin_process", "--port", str(self.port),
                "--blobs", str(listing)]
        if head_redirects:
            argv.append("--head-redirects")
        self.process = Process(argv, workdir / "standin.log", _clean_env())
        try:
            self.process.wait_http(f"{self.url}/v2/")
        except BaseException:
            self.process.stop()
            raise

    def __enter__(self) -> StandinProcess:
        return self

    def __exit__(self, exc: type[BaseException] | None, val: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.process.stop()


def gateway_config(upstream_url: str, certificates: Path, s3_endpoint: str,
                   **sections: dict[str, Any]) -> dict[str, Any]:
    """A complete configuration mapping; ``sections`` are merged over the defaults here."""
    config: dict[str, Any] = {
        "server": {"shutdown_grace_s": 10},
        "upstream": {"url": upstream_url, "timeout_s": 10, "connect_timeout_s": 5},
        "auth": {"issuer": ISSUER, "service": SERVICE, "certificates": str(certificates)},
        "storage": {"s3": {"bucket": BUCKET, "endpoint_url": s3_endpoint}},
        "log": {"level": "info", "access_log": True},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


class ServedGateway(GatewayProcess):
    """``blobgate serve`` for the hardening tests, with what they read from ``/proc``."""

    def __init__(self, workdir: Path, upstream_url: str, certificates: Path, s3_endpoint: str,
                 **sections: dict[str, Any]) -> None:
        super().__init__(workdir, gateway_config(upstream_url, certificates, s3_endpoint,
                                                 **sections), env=_clean_env())

    def cpu_seconds(self) -> float:
        """User plus system CPU time the gateway process has used."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def open_fds(self) -> int:
        """How many file descriptors the gateway process holds."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def terminate(self) -> None:
        """Send SIGTERM to the gateway only (not its process group)."""
        os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        """Wait for the gateway to exit; its exit code."""
        try:
            return self.process.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"blobgate still running after {timeout_s}s") from None


