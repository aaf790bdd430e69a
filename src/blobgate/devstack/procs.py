"""Child processes on loopback: free ports, readiness waits and clean shutdown."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive TCP ports on 127.0.0.1 that were free a moment ago."""
    while True:
        first = free_port()
        try:
            for port in range(first + 1, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first


class Process:
    """A child process whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(  # noqa: S603 - argv is built by the caller, no shell
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )

    def log_text(self) -> str:
        """Everything the process has written so far (also after it stopped)."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_http(
        self, url: str, timeout_s: float = 30.0, context: ssl.SSLContext | None = None
    ) -> None:
        """Wait until ``url`` answers any HTTP status; fail early if the process died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                code, tail = self.popen.returncode, self.log_text()[-3000:]
                raise RuntimeError(f"{self.argv[0]} exited with {code}:\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=1, context=context):  # noqa: S310
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{url} did not answer within {timeout_s}s:\n{self.log_text()[-3000:]}")

    def stop(self, timeout_s: float = 10.0) -> int:
        """Stop the process (and its process group); return its exit code."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()
        return self.popen.returncode
