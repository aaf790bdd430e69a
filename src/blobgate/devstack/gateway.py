"""``blobgate serve`` in a child process, the one way the stack, tests and benchmarks run it.

The listeners are put on free loopback ports; readiness is the private listener's
``/healthz`` (which needs no upstream, so a test serving the upstream from its own event
loop cannot deadlock); the environment carries the development S3 credentials and none
of the caller's ``BLOBGATE_*``/``AWS_*``/``AZURE_*``/``GOOGLE_*`` settings.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from blobgate.devstack import s3
from blobgate.devstack.logs import json_objects
from blobgate.devstack.procs import Process, free_port, free_ports
from blobgate.ops.logs import FLUSH_INTERVAL_S


def dev_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without blobgate or cloud settings, plus the dev
    credentials."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BLOBGATE_", "AWS_", "AZURE_", "GOOGLE_"))}
    env |= {"AWS_ACCESS_KEY_ID": s3.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": s3.SECRET_KEY,
            "AWS_EC2_METADATA_DISABLED": "true"}
    return env | dict(extra or {})


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, recursively for nested mappings (how scenario
    overrides meet a configuration, and how Helm merges values)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


class GatewayProcess:
    """A running ``blobgate serve`` for ``config`` (any configuration mapping)."""

    def __init__(
        self,
        workdir: Path,
        config: Mapping[str, Any],
        *,
        name: str = "blobgate",
        env: Mapping[str, str] | None = None,
        argv_prefix: Sequence[str] = (),
        python: str = sys.executable,
        ready_timeout_s: float = 30.0,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workers = int(config.get("server", {}).get("workers", 1))
        self.port, self.metrics_port = free_port(), free_ports(self.workers)
        self.admin_port = self._admin_ports()
        server = {**config.get("server", {}), "host": "127.0.0.1", "port": self.port}
        metrics = {**config.get("metrics", {}), "enabled": True, "host": "127.0.0.1",
                   "port": self.metrics_port}
        admin = {**config.get("admin", {}), "host": "127.0.0.1", "port": self.admin_port}
        self.config = {**config, "server": server, "metrics": metrics, "admin": admin}
        self.scheme = "https" if server.get("tls", {}).get("cert_file") else "http"
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(self.config))
        argv = [*argv_prefix, python, "-m", "blobgate", "serve", "--config", str(path)]
        self.process = Process(argv, workdir / f"{name}.log", env or dev_environment())
        try:
            for worker in range(self.workers):
                self.process.wait_http(f"{self.metrics_url(worker)}/healthz", ready_timeout_s)
        except BaseException:
            self.process.stop()
            raise

    @property
    def url(self) -> str:
        """The public listener's base URL."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """``host:port``, as container clients name a registry."""
        return f"127.0.0.1:{self.port}"

    def metrics_url(self, worker: int = 0) -> str:
        """The private listener of ``worker``: ``/metrics``, ``/healthz``, ``/readyz``."""
        return f"http://127.0.0.1:{self.metrics_port + worker}"

    def _admin_ports(self) -> int:
        """The first of ``workers`` free ports apart from the public and metrics ports."""
        taken = {self.port, *range(self.metrics_port, self.metrics_port + self.workers)}
        while True:
            first = free_ports(self.workers)
            if taken.isdisjoint(range(first, first + self.workers)):
                return first

    def admin_url(self, worker: int = 0) -> str:
        """The admin listener of ``worker`` (``POST /admin/cache/flush``, with its token)."""
        return f"http://127.0.0.1:{self.admin_port + worker}"

    @property
    def pid(self) -> int:
        """The serving process (the parent of the workers when there are several)."""
        return self.process.popen.pid

    def rss_bytes(self) -> int:
        """Resident memory of the process, from ``/proc/<pid>/status``."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.pid}")

    def log_text(self) -> str:
        """Everything the gateway wrote so far."""
        return self.process.log_text()

    def access_log(self) -> list[dict[str, Any]]:
        """The line of each request so far: access lines, and the audit lines that stand
        in for them (those carry the request's ``path``); other lines are skipped.
        blobgate writes its lines every ``FLUSH_INTERVAL_S``: they are read once an
        interval has passed and brought nothing new."""
        text = self.log_text()
        while True:
            time.sleep(2 * FLUSH_INTERVAL_S)
            newer = self.log_text()
            if newer == text:
                break
            text = newer
        return [e for e in json_objects(text)
                if e.get("logger") in ("blobgate.access", "blobgate.audit") and "path" in e]

    def stop(self) -> int:
        """Stop the gateway; its exit code."""
        return self.process.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
