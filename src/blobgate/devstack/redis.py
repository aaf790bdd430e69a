"""A real Redis for tests and benchmarks: the machine's own on 127.0.0.1:6379 when it
answers, else (or when a test needs to stop it or set a password) a private
``redis-server`` (Debian package ``redis-server``) on a free loopback port, keeping
nothing on disk; and the key file blobgate's replicas sign shared entries with."""

from __future__ import annotations

import secrets
import shutil
import socket
import time
from pathlib import Path

from blobgate.devstack.procs import Process, free_port

MACHINE = ("127.0.0.1", 6379)
INSTALL = "apt-get install -y redis-server"


def answers(host: str, port: int, password: str | None = None) -> bool:
    """True when a Redis at host:port answers PING (with ``password``, if any)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as conn:
            if password is not None:
                conn.sendall(f"AUTH {password}\r\n".encode())
                conn.recv(64)
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def mac_key(workdir: Path, name: str = "redis-mac-key") -> Path:
    """A new random key for ``redis.mac_key_file``, written to ``workdir/name``."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


def redis_url(workdir: Path) -> tuple[str, RedisServer | None]:
    """The machine's Redis URL when it answers, else a private server's (to be stopped)."""
    if answers(*MACHINE):
        return f"redis://{MACHINE[0]}:{MACHINE[1]}/0", None
    server = RedisServer(workdir)
    return server.url, server


class RedisServer:
    """A private ``redis-server``; ``stop`` and ``start`` keep its port."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError(f"redis-server is not installed ({INSTALL})")
        self.binary, self.workdir, self.password = binary, workdir, password
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        workdir.mkdir(parents=True, exist_ok=True)
        self.process: Process | None = None
        self.start()

    def start(self) -> None:
        argv = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        self.process = Process(argv, self.workdir / "redis.log")
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", self.port, self.password):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def log(self) -> str:
        return (self.workdir / "redis.log").read_text(errors="replace")
