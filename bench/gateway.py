"""blobgate processes with benchmark configurations, next to the stack's servers.

The configuration is the stack's own (``gateway_config``) with the access log off and
warnings only, plus per-scenario overrides; the process may be pinned to a core.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench import metrics
from bench.tools import pinned
from blobgate.devstack.gateway import GatewayProcess, dev_environment, merged
from blobgate.devstack.stack import Stack, gateway_config

QUIET = {"log": {"level": "warning", "access_log": False}}
DEFAULT_LOGGING = {"log": {"level": "info", "access_log": True}}  # blobgate's defaults


def write_config(stack: Stack, path: Path, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Write the stack's gateway configuration, made quiet and with ``overrides``."""
    config = merged(merged(gateway_config(stack), QUIET), overrides)
    path.write_text(yaml.safe_dump(config))
    return config


def config_error(stack: Stack, workdir: Path, overrides: Mapping[str, Any]) -> str | None:
    """What ``blobgate check-config`` says is wrong with ``overrides``, or ``None``."""
    path = workdir / "check-config.yaml"
    write_config(stack, path, overrides)
    argv = [sys.executable, "-m", "blobgate", "check-config", "--config", str(path)]
    done = subprocess.run(  # noqa: S603 - our own interpreter and a file we wrote
        argv, capture_output=True, text=True, env=dev_environment(), check=False)
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()


class Gateway(GatewayProcess):
    """A running ``blobgate serve`` for a scenario, optionally pinned to ``cpus``;
    metrics of worker ``i`` are on ``metrics_port + i``."""

    def __init__(
        self,
        stack: Stack,
        workdir: Path,
        name: str,
        overrides: Mapping[str, Any] | None = None,
        cpus: str | None = None,
    ) -> None:
        config = merged(merged(gateway_config(stack), QUIET), overrides or {})
        super().__init__(workdir, config, name=name, argv_prefix=pinned([], cpus))
        self.metrics_urls = [f"{self.metrics_url(i)}/metrics" for i in range(self.workers)]

    def samples(self) -> list[metrics.Sample]:
        """The metrics of every worker, concatenated."""
        return [sample for url in self.metrics_urls for sample in metrics.scrape(url)]

    def counter(self, name: str, **labels: str) -> float:
        """A counter summed over workers and over labels not given."""
        return metrics.total(self.samples(), name, **labels)
