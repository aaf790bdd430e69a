"""The whole local stack in one context manager: S3, token issuer, registry and blobgate.

Every server runs as its own process on a free loopback port. S3 is addressed as
``localhost`` and everything else as ``127.0.0.1``, so storage and gateway are distinct
hosts as in production (Go clients forward ``Authorization`` only to the same host).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from blobgate.devstack import s3
from blobgate.devstack.clients import Credentials
from blobgate.devstack.gateway import GatewayProcess
from blobgate.devstack.pki import write_signing_files
from blobgate.devstack.policy import ANYONE, Policy, Rule
from blobgate.devstack.procs import Process, free_port
from blobgate.devstack.registry import Registry, RegistryOptions, TokenAuth

SERVICE = "blobgate-dev-registry"
ISSUER = "blobgate-dev-token-issuer"
BUCKET = "registry"
PUSHER = Credentials("alice", "alice-dev-password")
TEAM_B_READER = Credentials("bob", "bob-dev-password")
DEV_POLICY = Policy(
    users={PUSHER.username: PUSHER.password, TEAM_B_READER.username: TEAM_B_READER.password},
    rules=(
        Rule(PUSHER.username, "*", ("pull", "push", "delete")),
        Rule(TEAM_B_READER.username, "team-b/*", ("pull",)),
        Rule(ANYONE, "public/*", ("pull",)),
    ),
)
_BLOB_KEY = re.compile(r"/blobs/sha256/[0-9a-f]{2}/(?P<hex>[0-9a-f]{64})/data")


class Stack:
    """Starts S3 (with the ``registry`` bucket), the token issuer, the registry and blobgate
    under ``workdir``; closing stops all of them, also when start-up fails half-way."""

    def __init__(
        self,
        workdir: Path,
        policy: Policy = DEV_POLICY,
        registry_options: RegistryOptions | None = None,
    ) -> None:
        self.workdir = workdir
        self.policy = policy
        self.registry_options = registry_options or RegistryOptions()
        self._cleanup = contextlib.ExitStack()
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.s3 = self._cleanup.enter_context(s3.S3Server(workdir))
            self.s3.client().create_bucket(Bucket=BUCKET)
            self.signing = write_signing_files(workdir / "pki")
            self.issuer_url, self.tokens = self._start_issuer()
            self.registry = self._cleanup.enter_context(
                Registry(workdir, self.s3, BUCKET, self.token_auth(), self.registry_options)
            )
            self.gateway = GatewayProcess(workdir, gateway_config(self))
            self._cleanup.callback(self.gateway.stop)
        except BaseException:
            self._cleanup.close()
            raise

    def _process(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> Process:
        process = Process(argv, self.workdir / f"{name}.log", env)
        self._cleanup.callback(process.stop)
        return process

    def _start_issuer(self) -> tuple[str, Process]:
        port = free_port()
        self.policy.write(self.workdir / "policy.json")
        argv = [
            sys.executable, "-m", "blobgate.devstack.tokens", "--port", str(port),
            "--key", str(self.signing.key_path), "--cert", str(self.signing.cert_path),
            "--issuer", ISSUER, "--service", SERVICE, "--policy", str(self.workdir / "policy.json"),
        ]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        process = self._process(argv, "tokens")
        process.wait_http(f"{url}/token")
        return url, process

    def token_auth(self) -> TokenAuth:
        """How a registry of this stack checks tokens (the stack's issuer and certificate)."""
        return TokenAuth(f"{self.issuer_url}/token", SERVICE, ISSUER, self.signing.cert_path)

    @property
    def gateway_url(self) -> str:
        """blobgate's base URL."""
        return self.gateway.url

    @property
    def metrics_url(self) -> str:
        """blobgate's private listener: ``/metrics``, ``/healthz``, ``/readyz``."""
        return self.gateway.metrics_url()

    @property
    def gateway_host(self) -> str:
        """``host:port`` of blobgate, as container clients name a registry."""
        return self.gateway.host

    def log_paths(self) -> dict[str, Path]:
        """Each server's log file, by server name."""
        processes = {
            "s3": self.s3.process,
            "tokens": self.tokens,
            "registry": self.registry.process,
            "blobgate": self.gateway.process,
        }
        return {name: process.log_path for name, process in processes.items()}

    def access_log(self) -> list[dict[str, Any]]:
        """blobgate's access-log entries so far; other log lines are skipped."""
        return self.gateway.access_log()

    def presigned_blob_gets(self) -> list[str]:
        """Digests of blobs S3 served (200 or 206) to presigned GETs, in request order."""
        digests = []
        for request in self.s3.requests():
            match = _BLOB_KEY.search(request.target)
            if match and request.presigned and request.method == "GET" and request.status < 300:
                digests.append("sha256:" + match["hex"])
        return digests

    def token(self, *scopes: str, creds: Credentials | None = None) -> str:
        """A token from the issuer for ``scopes`` (e.g. ``repository:a/b:pull``)."""
        query = urlencode([("service", SERVICE), *(("scope", scope) for scope in scopes)])
        request = urllib.request.Request(f"{self.issuer_url}/token?{query}")  # noqa: S310
        if creds is not None:
            basic = base64.b64encode(str(creds).encode()).decode()
            request.add_header("Authorization", f"Basic {basic}")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            token: str = json.load(response)["token"]
        return token

    def close(self) -> None:
        """Stop every server, newest first."""
        self._cleanup.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def gateway_config(stack: Stack) -> dict[str, Any]:
    """blobgate's configuration for ``stack`` (listeners are placed by ``GatewayProcess``)."""
    return {
        "upstream": {"url": stack.registry.url},
        "auth": {
            "issuer": ISSUER,
            "service": SERVICE,
            "certificates": str(stack.signing.cert_path),
            "leeway_s": 60,
        },
        "storage": {
            "backend": "s3",
            "s3": {
                "bucket": BUCKET,
                "region": s3.REGION,
                "endpoint_url": stack.s3.endpoint_url,
                "public_endpoint_url": None,
                "rootdirectory": stack.registry_options.rootdirectory,
                "path_style": True,
                "expires_s": 1200,
            },
        },
        "membership": {"source": "upstream", "cache_ttl_s": 300},
        "log": {"level": "info", "access_log": True},
    }
