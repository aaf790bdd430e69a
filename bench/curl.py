"""Downloads with curl, a separate process, into /dev/null; byte counts are checked."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from bench.tools import CLIENT_CPU, binary, pinned

WRITE_OUT = "%{http_code} %{size_download} %{time_total}"


@dataclass(frozen=True)
class Download:
    """One finished download."""

    status: int
    size: int
    seconds: float

    def ok(self, expected_size: int) -> bool:
        """A whole ``200`` of exactly the expected size."""
        return self.status == 200 and self.size == expected_size


def _argv(url: str, token: str, byte_range: str | None) -> list[str]:
    argv = [binary("curl"), "-s", "-o", "/dev/null", "-w", WRITE_OUT,
            "-H", f"Authorization: Bearer {token}", url]
    return pinned(argv if byte_range is None else [*argv, "-r", byte_range], CLIENT_CPU)


def _parse(output: str) -> Download:
    status, size, seconds = output.split()
    return Download(int(status), int(size), float(seconds))


def fetch(url: str, token: str, byte_range: str | None = None) -> Download:
    """Download ``url`` (or ``byte_range`` of it) once."""
    done = subprocess.run(  # noqa: S603 - fixed binary, arguments built here
        _argv(url, token, byte_range), capture_output=True, text=True, timeout=600, check=False
    )
    return _parse(done.stdout)


def fetch_parallel(url: str, token: str, count: int) -> tuple[list[Download], float]:
    """``count`` simultaneous downloads of ``url``; also the wall-clock seconds they took."""
    started = time.monotonic()
    running = [
        subprocess.Popen(_argv(url, token, None), stdout=subprocess.PIPE, text=True)  # noqa: S603
        for _ in range(count)
    ]
    try:
        outputs = [process.communicate(timeout=1200)[0] for process in running]
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [_parse(output) for output in outputs], time.monotonic() - started
