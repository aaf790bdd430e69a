"""A private containerd daemon whose root, state and sockets all live under one directory.

It lets the e2e suite pull through the gateway with ``ctr`` without touching the host's
containerd; only the content store and the native snapshotter are needed for a pull.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from blobgate.devstack.procs import Process

BINARY = "containerd"
_DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.restart",
    "io.containerd.monitor.v1.cgroups",
    "io.containerd.runtime.v1.linux",
    "io.containerd.runtime.v2.task",
    "io.containerd.service.v1.tasks-service",
    "io.containerd.grpc.v1.tasks",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.overlayfs",
    "io.containerd.snapshotter.v1.zfs",
)


def _config_toml(directory: Path, socket: Path) -> str:
    disabled = ", ".join(f'"{name}"' for name in _DISABLED_PLUGINS)
    return (
        "version = 2\n"
        f'root = "{directory / "root"}"\n'
        f'state = "{directory / "state"}"\n'
        f'temp = "{directory / "tmp"}"\n'
        f"disabled_plugins = [{disabled}]\n"
        "[grpc]\n"
        f'  address = "{socket}"\n'
        "[ttrpc]\n"
        f'  address = "{socket}.ttrpc"\n'
    )


class Containerd:
    """``containerd`` started with a generated config under ``directory``; ``ctr()`` talks
    to it. Unix socket paths are limited to 107 bytes, so keep ``directory`` short."""

    def __init__(self, directory: Path, timeout_s: float = 30.0) -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            raise FileNotFoundError(f"{BINARY} is not installed")
        (directory / "tmp").mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.socket = directory / "containerd.sock"
        config = directory / "config.toml"
        config.write_text(_config_toml(directory, self.socket))
        self.process = Process([binary, "--config", str(config)], directory / "containerd.log")
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.process.stop()
            raise

    @property
    def content_dir(self) -> Path:
        """Where the content store keeps blobs, as ``sha256/<hex>`` files."""
        return self.directory / "root" / "io.containerd.content.v1.content" / "blobs"

    def ctr(self, *args: str, timeout_s: float = 240.0) -> subprocess.CompletedProcess[str]:
        """Run ``ctr --address SOCKET args...``; the caller checks the result."""
        return subprocess.run(  # noqa: S603 - fixed binary, no shell
            ["ctr", "--address", str(self.socket), *args],  # noqa: S607 - resolved from PATH
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.ctr("version", timeout_s=timeout_s).returncode != 0:
            if self.process.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start:\n{self.process.log_text()[-3000:]}")
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the daemon."""
        self.process.stop()

    def __enter__(self) -> Containerd:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
