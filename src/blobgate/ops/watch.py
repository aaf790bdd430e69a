"""Reloading files that rotate under a running gateway (token certificates, and any other
key material), without a restart.

Kubernetes updates a mounted Secret by swapping a symlink, cert-manager rewrites files in
place: either way the content changes, so the watcher compares content hashes. A new
file that fails to load leaves the old material in force; the failure is logged once and
shown by ``blobgate_reload_healthy{file=...} 0`` until a good file appears. An
``optional`` file may come and go (a key kept only during a rotation): its absence is a
state of its own, not a file being swapped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from blobgate.ops.metrics import Stats

log = logging.getLogger(__name__)


class FileWatcher:
    """Calls ``apply`` whenever the content of any of ``paths`` (or of ``optional``,
    including its presence) changes."""

    def __init__(
        self,
        name: str,
        paths: Sequence[Path],
        apply: Callable[[], None],
        stats: Stats,
        interval_s: float,
        optional: Sequence[Path] = (),
    ) -> None:
        self.name = name
        self._paths = list(paths)
        self._optional = list(optional)
        self._apply = apply
        self._stats = stats
        self._interval_s = interval_s
        self._seen = self._fingerprint()
        stats.reload_healthy[name] = 1

    def _fingerprint(self) -> str | None:
        digest = hashlib.sha256()
        try:
            for path in self._paths:
                digest.update(path.read_bytes())
        except OSError:
            return None  # mid-swap or missing: look again next time
        for path in self._optional:
            try:
                digest.update(b"present:" + path.read_bytes())
            except FileNotFoundError:
                digest.update(b"absent")
            except OSError:
                return None
        return digest.hexdigest()

    def check(self) -> None:
        """Reload if the files changed since the last look."""
        current = self._fingerprint()
        if current is None or current == self._seen:
            return
        self._seen = current
        try:
            self._apply()
        except Exception as exc:
            log.error("reloading %s failed, keeping the previous one: %s", self.name, exc)
            self._stats.reloads[self.name, "error"] += 1
            self._stats.reload_healthy[self.name] = 0
            return
        log.info("reloaded %s", self.name)
        self._stats.reloads[self.name, "ok"] += 1
        self._stats.reload_healthy[self.name] = 1

    async def run(self) -> None:
        """Check every interval, forever (cancel to stop)."""
        while True:
            await asyncio.sleep(self._interval_s)
            self.check()
