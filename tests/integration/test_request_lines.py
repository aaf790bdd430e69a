"""Each request's line, as the README documents it: one complete JSON object per request
(the audit line standing in for the access line of a blob request with the log sink),
the query never written, secrets in a path scrubbed, and the levels keeping their meaning."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import pytest

from blobgate.config import AuditConfig, LogConfig

from support.gateway import GatewayFactory
from support.lines import ACCESS_KEYS, AUDIT_KEYS, BLOB_AUDIT_KEYS, Lines
from support.standin import StandIn
from support.tokens import Signer


@pytest.fixture
def blob(put_blob: Any, standin: tuple[StandIn, Any]) -> str:
    data = os.urandom(1500)
    digest: str = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data
    return digest


async def test_one_complete_line_per_request(
    gateway: GatewayFactory, signer: Signer, blob: str, lines: Lines,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    client = await gateway()
    token = signer.token("library/a", sub="erin")
    headers = {"Authorization": f"Bearer {token}"}
    sent = [
        ("GET", f"/v2/library/a/blobs/{blob}"),
        ("HEAD", f"/v2/library/a/blobs/{blob}"),
        ("GET", "/v2/library/a/tags/list?n=5&last=x"),
        ("GET", f"/api/v1/blobs/{blob}/url?repository=library/a"),
    ]
    for method, path in sent:
        await client.request(method, path, headers=headers, allow_redirects=False)
    await client.close()
    requests = [e for e in lines.entries() if "path" in e]
    assert [(e["method"], e["path"]) for e in requests] == [
        (method, path.partition("?")[0]) for method, path in sent]
    blob_lines, other_lines = requests[:2], requests[2:]
    for entry in blob_lines:
        assert entry["logger"] == "blobgate.audit"
        assert set(entry) == BLOB_AUDIT_KEYS
        assert (entry["user"], entry["user_name"], entry["route"]) == ("erin", "erin", "blob")
        assert datetime.fromisoformat(entry["at"]).timestamp() == pytest.approx(entry["ts"],
                                                                                abs=0.002)
        assert entry["ts_start"] <= entry["ts"]
        assert entry["duration_ms"] >= 0
    assert [e["outcome"] for e in blob_lines] == ["redirect", "local"]
    assert [e["location"] for e in blob_lines] == ["primary", None]
    assert [e["status"] for e in blob_lines] == [307, 200]
    for entry in other_lines:
        assert entry["logger"] == "blobgate.access"
        assert set(entry) == ACCESS_KEYS
    assert other_lines[1]["route"] == "api"
    (url_record,) = [e for e in lines.entries("blobgate.audit") if "path" not in e]
    assert set(url_record) == AUDIT_KEYS  # the URL handed out: an audit record of its own
    assert (url_record["outcome"], url_record["user_name"]) == ("url", "erin")
    assert token not in lines.text()


async def test_a_secret_in_a_path_is_scrubbed_and_a_query_never_written(
    gateway: GatewayFactory, signer: Signer, lines: Lines, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    client = await gateway()
    token = signer.token("library/a")
    for path in (f"/v2/{token}/tags/list",                       # a token as a path
                 f"/v2/library/a/blobs/password=hunter2{token}",  # a blob path that fails
                 f"/v2/library/a/tags/list?token={token}"):
        await client.get(path, allow_redirects=False)
    await client.close()
    written = lines.text()
    # the failed blob path is a blob request: its line is an audit line
    assert [e["logger"] for e in lines.entries()] == [
        "blobgate.access", "blobgate.audit", "blobgate.access"]
    for secret in (token, token.split(".")[2], "hunter2"):
        assert secret not in written
    assert "<redacted>" in written


@pytest.mark.parametrize(("log", "expected"), [
    (LogConfig(access_log=False), {"blobgate.audit"}),  # audit lines stay, access lines go
    (LogConfig(level="warning"), set()),                 # neither at warning
])
async def test_levels_keep_their_meaning(
    gateway: GatewayFactory, signer: Signer, blob: str, lines: Lines,
    caplog: pytest.LogCaptureFixture, log: LogConfig, expected: set[str],
) -> None:
    caplog.set_level(log.level.upper())  # as logs.configure sets it
    client = await gateway(log=log)
    headers = {"Authorization": f"Bearer {signer.token('library/a')}"}
    await client.get(f"/v2/library/a/blobs/{blob}", headers=headers, allow_redirects=False)
    await client.get("/v2/")
    await client.close()
    assert {e["logger"] for e in lines.entries()} == expected


async def test_postgres_audit_leaves_every_request_its_access_line(
    gateway: GatewayFactory, signer: Signer, blob: str, lines: Lines,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    client = await gateway(audit=AuditConfig(sink="postgres", dsn="postgresql://x@127.0.0.1:9/a"))
    headers = {"Authorization": f"Bearer {signer.token('library/a')}"}
    await client.get(f"/v2/library/a/blobs/{blob}", headers=headers, allow_redirects=False)
    await client.close()
    (entry,) = lines.entries()
    assert (entry["logger"], entry["outcome"]) == ("blobgate.access", "redirect")
    assert set(entry) == ACCESS_KEYS
