"""External programs the benchmarks drive, and CPU pinning.

Nothing is installed from here: a missing binary is reported with the apt-get command
that provides it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

PACKAGES = {"wrk": "wrk", "nginx": "nginx", "docker-registry": "docker-registry",
            "curl": "curl", "taskset": "util-linux"}
SERVER_CPU = "0"
CLIENT_CPU = "1"


def missing() -> list[str]:
    """Binaries the benchmarks need that are not on PATH."""
    return [binary for binary in PACKAGES if shutil.which(binary) is None]


def install_hint(binaries: Sequence[str]) -> str:
    """The command that installs ``binaries`` (a binary not listed comes in the package of
    its own name, as haproxy, skopeo or redis-server do)."""
    packages = sorted({PACKAGES.get(binary, binary) for binary in binaries})
    return f"apt-get install -y {' '.join(packages)}"


def binary(name: str) -> str:
    """The absolute path of ``name``, or ``FileNotFoundError`` with the install hint."""
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed; install with: {install_hint([name])}")
    return path


def two_cores() -> bool:
    """True when cores 0 and 1 exist, so server and client can each have one."""
    return {0, 1} <= os.sched_getaffinity(0)


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """``argv`` run under ``taskset -c cpus`` (unchanged when ``cpus`` is ``None``)."""
    if cpus is None or not two_cores():
        return list(argv)
    return [binary("taskset"), "-c", cpus, *argv]


def pin_threads(pid: int, cpus: str) -> None:
    """Pin every thread of a running process (threads it starts later inherit it)."""
    if not two_cores():
        return
    wanted = {int(cpu) for cpu in cpus.split(",")}
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), wanted)
