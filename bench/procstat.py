"""Memory and CPU of running processes, read from /proc.

With ``server.workers > 1`` blobgate's parent only forks and waits, so figures are
summed over the whole process tree.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (state is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def tree(pid: int) -> list[int]:
    """``pid`` and all of its descendants (found by parent pid; no /proc children file)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat_fields(int(entry.name))[1])
            except (OSError, IndexError):
                continue  # exited meanwhile
            parents.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(parents.get(current, []))
    return found


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    """Resident memory of the process tree now (sum of VmRSS), in MiB."""
    return sum(_status_kib(each, "VmRSS") for each in tree(pid)) / 1024


def pss_mib(pid: int) -> float:
    """Proportional set size of the tree in MiB: pages shared between processes (a forked
    parent and its workers) are split among them rather than counted in each."""
    total = 0
    for each in tree(pid):
        for line in Path(f"/proc/{each}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total / 1024


def hwm_mib(pid: int) -> float:
    """Peak resident memory (sum of each process's VmHWM) of the tree, in MiB."""
    return sum(_status_kib(each, "VmHWM") for each in tree(pid)) / 1024


def cpu_s(pid: int) -> float:
    """User plus system CPU time the process tree has used, in seconds."""
    total = 0
    for each in tree(pid):
        fields = _stat_fields(each)
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS_PER_S


def listen_overflows() -> int:
    """Connections the kernel dropped because a listen queue was full (this namespace)."""
    header, values = [
        line.split() for line in Path("/proc/net/netstat").read_text().splitlines()
        if line.startswith("TcpExt:")
    ]
    return int(values[header.index("ListenOverflows")])


class PeakRSS:
    """Samples the tree's resident memory in the background; ``peak_mib`` is the maximum."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, rss_mib(self.pid))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, rss_mib(self.pid))
