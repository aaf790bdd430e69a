"""HAProxy (Debian package ``haproxy``) in front of blobgate replicas, as a Kubernetes
Service stands in front of pods: a replica gets traffic only while its private
listener's ``/readyz`` answers 200, and a request whose connection fails (a replica that
is gone) is sent to another replica.

Everything it writes stays under its own directory; it runs in the foreground (``-db``)
as a child process on loopback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bench.tools import binary
from blobgate.devstack.procs import Process, free_port

CHECK_INTERVAL_MS = 300

CONFIG = """\
global
    maxconn 8192
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend blobgate
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter {interval}ms fall 2 rise 1
{servers}
"""


@dataclass(frozen=True)
class Backend:
    """One replica as the balancer knows it: its public port and its probe port."""

    name: str
    port: int
    probe_port: int


class HAProxy:
    """A running HAProxy balancing over ``backends``."""

    def __init__(self, workdir: Path, backends: Sequence[Backend]) -> None:
        prefix = workdir / "haproxy"
        prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        servers = "\n".join(f"    server {b.name} 127.0.0.1:{b.port} port {b.probe_port}"
                            for b in backends)
        config = prefix / "haproxy.cfg"
        config.write_text(CONFIG.format(port=self.port, interval=CHECK_INTERVAL_MS,
                                        servers=servers))
        argv = [binary("haproxy"), "-db", "-f", str(config)]
        self.process = Process(argv, prefix / "haproxy.log")
        try:
            self.process.wait_http(self.url + "/v2/")
        except BaseException:
            self.process.stop()
            raise

    @property
    def url(self) -> str:
        """The balancer's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """``host:port``, as container clients name a registry."""
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop HAProxy."""
        self.process.stop()

    def __enter__(self) -> HAProxy:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
