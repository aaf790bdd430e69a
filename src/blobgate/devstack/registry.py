"""The CNCF distribution registry (``docker-registry``) on loopback, storing blobs in S3.

It is the upstream the gateway fronts: the stack points its ``s3`` driver at the local
S3 server and its ``auth.token`` at the development token issuer, so uploads, manifests
and 401 challenges come from the real registry rather than a fake.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from blobgate.devstack import s3
from blobgate.devstack.logs import json_objects
from blobgate.devstack.procs import Process, free_port

BINARY = "docker-registry"


@dataclass(frozen=True)
class TokenAuth:
    """The registry's ``auth.token`` section: who issues tokens and which cert signs them."""

    realm: str
    service: str
    issuer: str
    cert_path: Path


@dataclass(frozen=True)
class RegistryRequest:
    """One request the registry reported as completed in its log."""

    method: str
    uri: str
    status: int


@dataclass(frozen=True)
class Remote:
    """Another registry a pull-through cache fetches from, and its credentials there."""

    url: str
    username: str
    password: str


@dataclass(frozen=True)
class RegistryOptions:
    """Tunables of the registry; ``redirect`` lets the registry itself redirect blob GETs;
    ``remote`` makes it a pull-through cache of that registry (``proxy.remoteurl``)."""

    rootdirectory: str = ""
    log_level: str = "info"
    redirect: bool = False
    remote: Remote | None = None


def registry_config(
    port: int, s3_server: s3.S3Server, bucket: str, auth: TokenAuth, options: RegistryOptions
) -> dict[str, Any]:
    """The registry's ``config.yml`` as a mapping."""
    proxy = {} if options.remote is None else {"proxy": {
        "remoteurl": options.remote.url, "username": options.remote.username,
        "password": options.remote.password}}
    return proxy | {
        "version": 0.1,
        "log": {"level": options.log_level, "formatter": "json", "accesslog": {"disabled": True}},
        "storage": {
            "s3": {
                "regionendpoint": s3_server.endpoint_url,
                "region": s3.REGION,
                "bucket": bucket,
                "accesskey": s3.ACCESS_KEY,
                "secretkey": s3.SECRET_KEY,
                "secure": False,
                "v4auth": True,
                "rootdirectory": options.rootdirectory,
            },
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "redirect": {"disable": not options.redirect},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        "auth": {
            "token": {
                "realm": auth.realm,
                "service": auth.service,
                "issuer": auth.issuer,
                "rootcertbundle": str(auth.cert_path),
            }
        },
    }


class Registry:
    """A running ``docker-registry serve`` process; the bucket must already exist."""

    def __init__(
        self,
        workdir: Path,
        s3_server: s3.S3Server,
        bucket: str,
        auth: TokenAuth,
        options: RegistryOptions | None = None,
    ) -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            raise FileNotFoundError(f"{BINARY} is not installed")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "registry.yml"
        settings = registry_config(self.port, s3_server, bucket, auth, options or RegistryOptions())
        config.write_text(yaml.safe_dump(settings))
        # The s3 driver panics at start-up when AWS_CA_BUNDLE is set.
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.process = Process([binary, "serve", str(config)], workdir / "registry.log", env)
        try:
            self.process.wait_http(f"{self.url}/v2/")
        except BaseException:
            self.process.stop()
            raise

    def requests(self) -> list[RegistryRequest]:
        """Every request the registry has completed so far, oldest first."""
        return [
            RegistryRequest(
                str(entry.get("http.request.method")),
                str(entry.get("http.request.uri")),
                int(entry.get("http.response.status", 0)),
            )
            for entry in json_objects(self.process.log_text())
            if str(entry.get("msg", "")).startswith("response completed")
        ]

    def close(self) -> None:
        """Stop the registry."""
        self.process.stop()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
