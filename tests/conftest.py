"""Fixtures shared by all test suites: real S3 and Azure Blob servers, a GCS emulator and
service account, token signing, a gateway factory."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from blobgate.app import create_app, load_keys
from blobgate.config import (
    AuthConfig,
    Config,
    RedisConfig,
    S3Config,
    StorageConfig,
    UpstreamConfig,
)
from blobgate.devstack import redis as devredis
from blobgate.devstack import s3 as devs3
from blobgate.health import create_metrics_app
from blobgate.ops.accesslog import AccessLogger
from blobgate.reference import parse_digest, storage_key

from support import azurite as az
from support import gcs
from support.gateway import BUCKET, GatewayFactory, GatewayTestServer, Scrape
from support.image import DOCKERFILE, DOCKERIGNORE, REPO, DockerIgnore, Image, build, parse
from support.lines import Lines
from support.pki import PKI
from support.postgres import fresh_database
from support.standin import StandIn
from support.tokens import ISSUER, SERVICE, Signer


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devs3.S3Server]:
    """moto's S3 server over HTTP, with the registry bucket, and credentials in the env."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = devs3.ACCESS_KEY
    os.environ["AWS_SECRET_ACCESS_KEY"] = devs3.SECRET_KEY
    with devs3.S3Server(tmp_path_factory.mktemp("s3")) as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def put_blob(s3_server: devs3.S3Server) -> Callable[[bytes, str], str]:
    """Store bytes where distribution keeps a blob; returns the digest."""
    client = s3_server.client()

    def put(data: bytes, rootdirectory: str = "") -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        key = storage_key(rootdirectory, parse_digest(digest))
        client.put_object(Bucket=BUCKET, Key=key, Body=data)
        return digest

    return put


@pytest.fixture(scope="session")
def azurite_binary() -> Path:
    """Azurite's blob service, installed on first use (skips only without npm)."""
    binary, why = az.install()
    if binary is None:
        pytest.skip(f"no Azurite and no npm to install it: {why}")
    return binary


@pytest.fixture(scope="session")
def azurite(azurite_binary: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[az.Azurite]:
    """Azurite over HTTP with the ``registry`` container (account-key SAS)."""
    with az.running(azurite_binary, tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite_oauth(azurite_binary: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[az.Azurite]:
    """Azurite over HTTPS accepting Bearer tokens (user delegation SAS)."""
    pki = PKI(tmp_path_factory.mktemp("azurite-pki"))
    cert, key = pki.issue("azurite", sans=("localhost", "127.0.0.1"))
    with az.running(azurite_binary, tmp_path_factory.mktemp("azurite-oauth"),
                    (pki.ca_path, cert, key)) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[gcs.ServiceAccount]:
    """A service account key made for this run, and the token endpoint it names."""
    account = gcs.ServiceAccount(tmp_path_factory.mktemp("gcs-account"))
    yield account
    account.tokens.stop()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[gcs.Emulator]:
    """gcp-storage-emulator with the registry bucket (serves bytes; checks no signature)."""
    with gcs.emulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A fresh database on a real PostgreSQL server (see support.postgres)."""
    with fresh_database() as dsn:
        if dsn is None:
            pytest.skip("no PostgreSQL: set BLOBGATE_TEST_PG_DSN or apt-get install -y postgresql")
        yield dsn


@pytest.fixture(scope="session")
def runtime_image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The Dockerfile's builder stage replayed (``support.image``): its /opt/blobgate holds
    the locked runtime set alone, installed by hash as ``docker build`` installs it."""
    stages = parse(DOCKERFILE.read_text())[1]
    context = DockerIgnore.read(DOCKERIGNORE).context(REPO)
    return build(tmp_path_factory.mktemp("image"), context, stages[0], stages[-1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: the machine's own on 127.0.0.1:6379 when it answers, else a private
    ``redis-server`` for the session."""
    try:
        url, server = devredis.redis_url(tmp_path_factory.mktemp("redis"))
    except FileNotFoundError:
        pytest.skip(f"no Redis: {devredis.INSTALL}")
    yield url
    if server is not None:
        server.stop()


@pytest.fixture
def shared_redis(redis_url: str, tmp_path: Path) -> RedisConfig:
    """A ``redis`` section on that Redis: keys under a prefix of this test's own, signed
    with a key made for it (its file: ``mac_key_file``); calls may take a second (a busy
    test machine is no outage), a failure is tried again at once."""
    return RedisConfig(url=redis_url, key_prefix=f"t{secrets.token_hex(4)}:",
                       mac_key_file=str(devredis.mac_key(tmp_path)), timeout_ms=1000,
                       retry_s=0)


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="session")
def bundle(signer: Signer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return signer.write_bundle(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StandIn, TestServer]]:
    state = StandIn()
    server = TestServer(state.app())
    await server.start_server()
    yield state, server
    await server.close()


@pytest.fixture
def lines() -> Lines:
    """The access, audit and log lines of the test's gateways."""
    return Lines()


@pytest.fixture
async def gateway(
    standin: tuple[StandIn, TestServer],
    s3_server: devs3.S3Server,
    bundle: Path,
    signer: Signer,
    lines: Lines,
) -> AsyncIterator[GatewayFactory]:
    """Builds a blobgate in front of the stand-in; keyword arguments replace config parts.
    Its access and audit lines go to ``lines``."""
    clients: list[TestClient[Any, Any]] = []

    async def make(**parts: Any) -> TestClient[Any, Any]:
        cfg = Config(
            upstream=UpstreamConfig(url=str(standin[1].make_url("")), timeout_s=2,
                                    connect_timeout_s=2),
            auth=AuthConfig(issuer=ISSUER, service=SERVICE, certificates=str(bundle)),
            storage=StorageConfig(s3=S3Config(bucket=BUCKET, endpoint_url=s3_server.endpoint_url)),
        )
        cfg = replace(cfg, **parts)
        app = create_app(cfg, load_keys(cfg), lines)
        server = GatewayTestServer(app)
        await server.start_server(
            access_log_class=AccessLogger.bound(app, cfg.log.access_log),
            access_log=logging.getLogger("blobgate.access"),
        )
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def scrape() -> AsyncIterator[Scrape]:
    """Reads a gateway's /metrics into ``{'name{label="v",...}': value}``."""
    opened: list[TestClient[Any, Any]] = []

    async def read(gateway: TestClient[Any, Any]) -> dict[str, float]:
        if not opened:
            opened.append(TestClient(TestServer(create_metrics_app(gateway.server.app))))
            await opened[0].start_server()
        text = await (await opened[0].get("/metrics")).text()
        values = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}"] = sample.value
        return values

    yield read
    for client in opened:
        await client.close()
