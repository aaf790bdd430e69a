"""A private PostgreSQL cluster for a run (Debian's ``postgresql`` binaries, ``initdb`` and
``pg_ctl``), on a free loopback port, that a fault may stop and start again.

The machine's own server on 127.0.0.1:5432 is never touched. As root, the cluster runs
as the ``postgres`` user (``runuser``), as PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import asyncpg

from blobgate.devstack.procs import free_port


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not found:
        raise FileNotFoundError("PostgreSQL is not installed; install with: "
                                "apt-get install -y postgresql")
    return Path(found[-1])


class Cluster:
    """``initdb`` in a directory of its own (the ``postgres`` user must be able to reach
    it, which a private working directory of root's is not), started; ``stop`` and
    ``start`` keep its port and data; ``close`` removes it."""

    def __init__(self) -> None:
        self.bindir, self.port = _bindir(), free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="blobgate-chaos-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.directory / "db"), "-A", "trust", "-U", "postgres")
        self.start()

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        argv = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=check, capture_output=True)  # noqa: S603 - fixed binaries

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.directory / "db"), "-w", "-l",
                  str(self.directory / "log"), "-o",
                  f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        """Stop the server (fast: open sessions are ended)."""
        self._run("pg_ctl", "-D", str(self.directory / "db"), "-m", "fast", "-w", "stop")

    def count(self, sql: str, *args: object) -> int:
        """The single integer ``sql`` (with ``$n`` parameters ``args``) returns."""
        async def query() -> int:
            conn = await asyncpg.connect(self.dsn, timeout=5)
            try:
                return int(await conn.fetchval(sql, *args))
            finally:
                await conn.close()
        return asyncio.run(query())

    def close(self) -> None:
        """Stop the server if it runs and remove its directory."""
        self._run("pg_ctl", "-D", str(self.directory / "db"), "-m", "immediate", "stop",
                  check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
