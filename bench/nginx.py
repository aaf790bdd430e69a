"""nginx as a foreground child process with a generated configuration.

Everything it writes (pid file, error log, temp files) stays under its own directory
in the run's temporary directory. One worker, no master process, no access log.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from bench.tools import binary, pinned
from blobgate.devstack.procs import Process, free_port

CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
{body}
    }}
}}
"""


class Nginx:
    """A running nginx serving one ``server`` block whose body is ``body``."""

    def __init__(self, workdir: Path, name: str, body: str, cpus: str | None) -> None:
        prefix = workdir / f"nginx-{name}"
        prefix.mkdir(parents=True)
        self.port = free_port()
        config = prefix / "nginx.conf"
        config.write_text(CONFIG.format(prefix=prefix, port=self.port, body=body))
        argv = [binary("nginx"), "-p", str(prefix), "-e", str(prefix / "error.log"),
                "-c", str(config)]
        self.process = Process(pinned(argv, cpus), prefix / "output.log")
        try:
            self.process.wait_http(self.url + "/")
        except BaseException:
            self.process.stop()
            raise

    @classmethod
    def origin(cls, workdir: Path, root: Path, cpus: str | None) -> Nginx:
        """Static files from ``root`` (sendfile)."""
        return cls(workdir, "origin", f"        root {root};", cpus)

    @classmethod
    def proxy(cls, workdir: Path, upstream: str, cpus: str | None) -> Nginx:
        """``proxy_pass`` to ``upstream`` with nginx's default buffering."""
        return cls(workdir, "proxy", f"        location / {{ proxy_pass {upstream}; }}", cpus)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop nginx."""
        self.process.stop()

    def __enter__(self) -> Nginx:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
