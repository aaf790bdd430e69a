"""Load from wrk, a separate process: many connections, rotating tokens and digests.

``rotate.lua`` pre-formats one request per (path, token) pair and cycles through them,
so the server sees many distinct tokens and blobs rather than one hot key; it counts
response statuses and prints its summary as one JSON line.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.tools import CLIENT_CPU, binary, pinned

SCRIPT = Path(__file__).with_name("rotate.lua")
MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    timeouts: int
    statuses: dict[int, int]
    expected: int

    @property
    def rps(self) -> float:
        """Completed responses per second."""
        return self.requests / self.duration_s

    @property
    def unexpected(self) -> int:
        """Responses whose status was not the expected one."""
        return sum(n for status, n in self.statuses.items() if status != self.expected)

    @property
    def errors(self) -> int:
        """Socket errors, timeouts and unexpected statuses."""
        return self.socket_errors + self.timeouts + self.unexpected


def spread(loads: Sequence[Load]) -> str:
    """The lowest and highest req/s of ``loads`` (the noise between rounds)."""
    rates = [load.rps for load in loads]
    return f"{min(rates):,.0f} to {max(rates):,.0f}"


def describe_errors(loads: Sequence[Load]) -> str:
    """The errors of ``loads`` summed, broken down by kind when there are any.

    wrk counts a *timeout* when a response took longer than its 2 s timeout; such a
    response is left out of the latency percentiles.
    """
    kinds = {
        "socket": sum(load.socket_errors for load in loads),
        "> 2 s": sum(load.timeouts for load in loads),
        "unexpected status": sum(load.unexpected for load in loads),
    }
    total = sum(kinds.values())
    detail = ", ".join(f"{n} {kind}" for kind, n in kinds.items() if n)
    return f"{total} ({detail})" if total else "0"


def write_pairs(path: Path, pairs: Sequence[tuple[str, str]]) -> Path:
    """Write (request path, Bearer token) pairs in the format ``rotate.lua`` reads."""
    path.write_text("".join(f"{target}\t{token}\n" for target, token in pairs))
    return path


def run(
    base_url: str,
    pairs: Path,
    connections: int,
    duration_s: int,
    expected: int = 307,
    cpus: str | None = CLIENT_CPU,
    script: Path = SCRIPT,
) -> Load:
    """Run wrk (one thread) against ``base_url`` with ``script`` (``rotate.lua`` or one
    built on it) and parse its summary."""
    argv = [binary("wrk"), "-t1", f"-c{connections}", f"-d{duration_s}s",
            "-s", str(script), base_url, "--", str(pairs)]
    done = subprocess.run(  # noqa: S603 - fixed binary, arguments built here
        pinned(argv, cpus), capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix(MARKER))
    return Load(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        socket_errors=raw["connect"] + raw["read"] + raw["write"],
        timeouts=raw["timeout"],
        statuses={int(k): v for k, v in raw["statuses"].items()},
        expected=expected,
    )
