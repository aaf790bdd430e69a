"""All log output of a run, at debug level and including libraries' logs, holds no token,
password or URL signature."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from blobgate.config import AuditConfig
from blobgate.devstack.s3 import SECRET_KEY
from blobgate.ops.logs import JSONFormatter

from support.gateway import GatewayFactory
from support.lines import Lines
from support.standin import StandIn
from support.tokens import Signer


@pytest.fixture
def all_logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(old_level)


async def test_no_secret_in_any_log_line(
    gateway: GatewayFactory, signer: Signer, put_blob: Any, standin: tuple[StandIn, Any],
    all_logs: io.StringIO, lines: Lines,
) -> None:
    data = os.urandom(5000)
    digest = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data
    password = "pg-hunter2-password"
    client = await gateway(audit=AuditConfig(
        sink="postgres", dsn=f"postgresql://blobgate:{password}@127.0.0.1:9/audit",
        flush_interval_s=0.01,
    ))
    tokens = [signer.token("library/a"), signer.token("library/b"),
              signer.token("library/a", exp=1)]
    signatures = []
    for token in tokens:
        for method in ("GET", "HEAD"):
            response = await client.request(
                method, f"/v2/library/a/blobs/{digest}", allow_redirects=False,
                headers={"Authorization": f"Bearer {token}"},
            )
            query = dict(parse_qsl(urlsplit(response.headers.get("Location", "")).query))
            if "X-Amz-Signature" in query:
                signatures.append(query["X-Amz-Signature"])
    await client.get("/broken", headers={"Authorization": f"Bearer {tokens[0]}"})
    await client.close()
    text = all_logs.getvalue() + lines.text()
    assert signatures, "no presigned URL was handed out"
    assert "blobgate.access" in {e["logger"] for e in lines.entries()}  # the run did log
    for secret in [*tokens, *signatures, password, SECRET_KEY]:
        assert secret not in text
    for token in tokens:
        assert token.split(".")[2] not in text  # not even the signature part
