"""An S3 endpoint for tests and the demo: moto in server mode, over real HTTP."""

from __future__ import annotations

import re
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

from blobgate.devstack.procs import Process, free_port

ACCESS_KEY = "blobgate-dev-access"
SECRET_KEY = "blobgate-dev-secret-key"  # noqa: S105 - moto accepts any credentials
REGION = "us-east-1"

_REQUEST_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
_ANSI_STYLE = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours non-200 request lines


@dataclass(frozen=True)
class S3Request:
    """One request the S3 server logged."""

    method: str
    target: str
    status: int

    @property
    def presigned(self) -> bool:
        """True when the request carried a query-string (presigned) signature."""
        return "X-Amz-Signature=" in self.target


class S3Server:
    """moto's S3 server on 127.0.0.1, addressed as ``localhost`` (a host apart from the gateway).

    ``requests()`` parses moto's access log so tests can count what really reached S3.
    """

    def __init__(
        self,
        workdir: Path,
        host_name: str = "localhost",
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """``tls``: (certificate, key, CA) to serve HTTPS with instead of HTTP."""
        self.port = free_port()
        scheme = "https" if tls else "http"
        self.endpoint_url = f"{scheme}://{host_name}:{self.port}"
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        context = None
        self.ca_file = None if tls is None else tls[2]
        if tls is not None:
            argv += ["-c", str(tls[0]), "-k", str(tls[1])]
            context = ssl.create_default_context(cafile=str(tls[2]))
        self.process = Process(argv, workdir / "s3.log")
        try:
            self.process.wait_http(f"{scheme}://{host_name}:{self.port}/moto-api/",
                                   context=context)
        except BaseException:
            self.process.stop()
            raise

    def client(self) -> Any:
        """A synchronous boto3 S3 client for fixtures (bucket setup, uploads)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            verify=str(self.ca_file) if self.ca_file else None,
        )

    def requests(self) -> list[S3Request]:
        """Every request logged so far, oldest first."""
        return [
            S3Request(m["method"], m["target"], int(m["status"]))
            for m in _REQUEST_LINE.finditer(_ANSI_STYLE.sub("", self.process.log_text()))
        ]

    def close(self) -> None:
        """Stop the server."""
        self.process.stop()

    def __enter__(self) -> S3Server:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
