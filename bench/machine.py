"""A description of the machine and software a run measured, for the results header."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import blobgate
from bench.tools import binary


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1 << 20)
    return 0.0


def _tool_version(name: str, flag: str) -> str:
    done = subprocess.run(  # noqa: S603 - fixed binaries
        [binary(name), flag], capture_output=True, text=True, check=False
    )
    output = (done.stdout + done.stderr).strip().splitlines()
    return output[0] if output else "unknown"


def describe() -> list[str]:
    """One line per fact: cores, CPU model, RAM, kernel, Python and library versions."""
    return [
        f"- CPU: {os.cpu_count()} cores, {_cpu_model()}",
        f"- RAM: {_ram_gib():.1f} GiB; kernel {platform.release()}",
        f"- Python {platform.python_version()}, aiohttp {version('aiohttp')}, "
        f"uvloop {version('uvloop')}, blobgate {version('blobgate')}",
        f"- wrk {_tool_version('wrk', '-v').split()[1]}, "
        f"{_tool_version('nginx', '-v').rpartition(' ')[2]}, "
        f"distribution {_tool_version('docker-registry', '--version').rpartition(' ')[2]}",
    ]


def _git(*args: str) -> str:
    """Output of a read-only git command in the checkout ('' without git)."""
    git = shutil.which("git")
    if git is None:
        return ""
    done = subprocess.run(  # noqa: S603 - fixed binary; --no-optional-locks: no index writes
        [git, "--no-optional-locks", *args], capture_output=True, text=True, check=False,
        cwd=Path(blobgate.__file__).parent,
    )
    return done.stdout.rstrip()


def source_state() -> str:
    """Which blobgate code ran: commit, uncommitted files under src/, content fingerprint."""
    package = Path(blobgate.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    changed = [line[3:] for line in _git("status", "--porcelain", "--", ".").splitlines()]
    local = f"uncommitted: {', '.join(changed)}" if changed else "no uncommitted changes"
    return (f"blobgate source: commit {_git('rev-parse', '--short', 'HEAD') or 'unknown'}, "
            f"{local}; fingerprint {digest.hexdigest()[:12]}")
