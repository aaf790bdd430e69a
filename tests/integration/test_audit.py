"""The audit trail against a real PostgreSQL: rows per pull, drops when the database
vanishes (pulls unaffected), a flush of queued rows on shutdown, and the client each
record names: the forwarded address behind a trusted proxy, the peer otherwise."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from blobgate.config import AuditConfig, RoutingConfig
from blobgate.ops.audit import AuditRecord, PostgresAudit
from blobgate.ops.metrics import Stats

from support.gateway import GatewayFactory, Scrape
from support.lines import ACCESS_KEYS, BLOB_AUDIT_KEYS, Lines
from support.standin import StandIn
from support.tcpproxy import TCPProxy
from support.tokens import Signer

Standin = tuple[StandIn, Any]


@pytest.fixture
def blob(put_blob: Any, standin: Standin) -> str:
    data = os.urandom(2048)
    digest: str = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data
    return digest


async def rows(dsn: str, table: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass($1)", table)
        query = f"SELECT * FROM {table} ORDER BY at"  # noqa: S608 - test-owned table name
        return list(await conn.fetch(query)) if exists else []
    finally:
        await conn.close()


async def eventually(check: Callable[[], Awaitable[bool]], tries: int = 200) -> None:
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_each_pull_writes_a_row(
    gateway: GatewayFactory, pg_dsn: str, signer: Signer, blob: str
) -> None:
    table = "audit_rows"
    client = await gateway(audit=AuditConfig(sink="postgres", dsn=pg_dsn, table=table,
                                             flush_interval_s=0.05))
    token = signer.token("library/a", sub="carol")
    for _ in range(3):
        response = await client.get(f"/v2/library/a/blobs/{blob}", allow_redirects=False,
                                    headers={"Authorization": f"Bearer {token}"})
        assert response.status == 307
    assert (await client.get(f"/v2/library/a/blobs/{blob}", allow_redirects=False)).status == 401

    async def four() -> bool:
        return len(await rows(pg_dsn, table)) == 4

    await eventually(four)
    written = await rows(pg_dsn, table)
    assert [r["outcome"] for r in written] == ["redirect"] * 3 + ["denied"]
    assert {r["user_name"] for r in written[:3]} == {"carol"}
    assert {r["repository"] for r in written} == {"library/a"}
    assert {r["digest"] for r in written} == {blob}
    assert [r["status"] for r in written] == [307, 307, 307, 401]
    assert (written[0]["client"], written[0]["peer"]) == ("127.0.0.1", "127.0.0.1")


async def test_database_gone_mid_run_records_wait_for_it_and_pulls_succeed(
    gateway: GatewayFactory, pg_dsn: str, signer: Signer, blob: str, scrape: Scrape
) -> None:
    """While the database is gone, pulls go on and their records wait in the queue (up to
    ``queue_size``; the rest are dropped and counted); once it is back they are written."""
    target = urlsplit(pg_dsn)
    proxy = TCPProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    via_proxy = pg_dsn.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    table = "audit_cut"
    client = await gateway(audit=AuditConfig(sink="postgres", dsn=via_proxy, table=table,
                                             flush_interval_s=0.05, queue_size=3))
    headers = {"Authorization": f"Bearer {signer.token('library/a')}"}
    path = f"/v2/library/a/blobs/{blob}"
    assert (await client.get(path, headers=headers, allow_redirects=False)).status == 307

    async def written(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len(await rows(pg_dsn, table)) == count
        return check

    await eventually(await written(1))
    before = await scrape(client)
    await proxy.cut()
    for _ in range(5):
        assert (await client.get(path, headers=headers, allow_redirects=False)).status == 307
    dropped = 'blobgate_audit_records_total{result="dropped"}'

    async def two_dropped() -> bool:
        return (await scrape(client)).get(dropped, 0) - before.get(dropped, 0) == 2

    await eventually(two_dropped)
    assert len(await rows(pg_dsn, table)) == 1
    await proxy.start()  # the database is back
    await eventually(await written(4), tries=400)  # the pool retries after 5 s
    assert (await scrape(client)).get(dropped, 0) - before.get(dropped, 0) == 2


async def test_queued_rows_are_flushed_on_shutdown(
    gateway: GatewayFactory, pg_dsn: str, signer: Signer, blob: str
) -> None:
    table = "audit_flush"
    client = await gateway(audit=AuditConfig(sink="postgres", dsn=pg_dsn, table=table,
                                             flush_interval_s=3600, batch_size=10_000))
    headers = {"Authorization": f"Bearer {signer.token('library/a')}"}
    for _ in range(6):
        response = await client.get(f"/v2/library/a/blobs/{blob}", headers=headers,
                                    allow_redirects=False)
        assert response.status == 307
    await asyncio.sleep(0.2)
    assert await rows(pg_dsn, table) == []  # still batching: nothing written yet
    await client.close()
    assert len(await rows(pg_dsn, table)) == 6


async def test_log_sink_writes_one_json_line_per_blob_request(
    gateway: GatewayFactory, signer: Signer, blob: str, caplog: pytest.LogCaptureFixture,
    lines: Lines,
) -> None:
    client = await gateway()
    headers = {"Authorization": f"Bearer {signer.token('library/a', sub='dave')}"}
    with caplog.at_level("INFO"):
        await client.get(f"/v2/library/a/blobs/{blob}", headers=headers, allow_redirects=False)
        await client.get("/v2/")
    audit, access = lines.entries("blobgate.audit"), lines.entries("blobgate.access")
    assert len(audit) == 1  # the blob request's only line: it stands in for its access line
    assert [e["path"] for e in access] == ["/v2/"]
    (entry,) = audit
    assert (entry["user_name"], entry["user"]) == ("dave", "dave")
    assert (entry["repository"], entry["digest"]) == ("library/a", blob)
    assert (entry["method"], entry["outcome"], entry["status"]) == ("GET", "redirect", 307)
    assert (entry["client"], entry["peer"]) == ("127.0.0.1", "127.0.0.1")
    assert entry["path"] == f"/v2/library/a/blobs/{blob}"
    assert entry["route"] == "blob"
    assert datetime.fromisoformat(entry["at"]).tzinfo is not None
    assert set(entry) == BLOB_AUDIT_KEYS
    assert set(access[0]) == ACCESS_KEYS


BEHIND_INGRESS = RoutingConfig(trusted_proxies=("127.0.0.0/8",))


def forwarded(token: str, chain: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Forwarded-For": chain}


async def test_behind_a_trusted_proxy_lines_name_the_forwarded_client(
    gateway: GatewayFactory, signer: Signer, blob: str, caplog: pytest.LogCaptureFixture,
    lines: Lines,
) -> None:
    client = await gateway(routing=BEHIND_INGRESS)
    token = signer.token("library/a")
    with caplog.at_level("INFO"):  # one connection, requests from several clients
        await client.get(f"/v2/library/a/blobs/{blob}", allow_redirects=False,
                         headers=forwarded(token, "203.0.113.9"))
        await client.get(f"/v2/library/a/blobs/{blob}", allow_redirects=False,
                         headers=forwarded(token, "198.51.100.7, 203.0.113.10, 127.0.0.5"))
        await client.get("/v2/", headers=forwarded(token, "2001:db8::7"))
        await client.get(f"/api/v1/blobs/{blob}/url?repository=library/a",
                         headers=forwarded(token, "203.0.113.11"))
    requests = [e for e in lines.entries() if "path" in e]
    assert [(e["client"], e["peer"]) for e in requests] == [
        ("203.0.113.9", "127.0.0.1"),
        ("203.0.113.10", "127.0.0.1"),  # the first hop no trusted proxy vouches for
        ("2001:db8::7", "127.0.0.1"),
        ("203.0.113.11", "127.0.0.1"),
    ]
    (url_record,) = [e for e in lines.entries("blobgate.audit") if "path" not in e]
    assert (url_record["client"], url_record["peer"]) == ("203.0.113.11", "127.0.0.1")


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(
    gateway: GatewayFactory, signer: Signer, blob: str, caplog: pytest.LogCaptureFixture,
    lines: Lines,
) -> None:
    client = await gateway(routing=RoutingConfig(trusted_proxies=("10.0.0.0/8",)))
    token = signer.token("library/a")
    with caplog.at_level("INFO"):
        await client.get(f"/v2/library/a/blobs/{blob}", allow_redirects=False,
                         headers=forwarded(token, "203.0.113.9"))
        await client.get(f"/api/v1/blobs/{blob}/url?repository=library/a",
                         headers=forwarded(token, "203.0.113.9"))
    entries = lines.entries("blobgate.audit")
    assert len(entries) == 2
    assert {(e["client"], e["peer"]) for e in entries} == {("127.0.0.1", "127.0.0.1")}
    assert "203.0.113.9" not in lines.text()


async def test_postgres_rows_name_client_and_peer_in_an_older_table(
    gateway: GatewayFactory, pg_dsn: str, signer: Signer, blob: str
) -> None:
    table = "audit_peer"
    conn = await asyncpg.connect(pg_dsn)
    try:  # the table as blobgate created it before the peer column
        await conn.execute(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ("
                           "at timestamptz NOT NULL, user_name text NOT NULL, repository text "
                           "NOT NULL, digest text NOT NULL, method text NOT NULL, outcome text "
                           "NOT NULL, status integer NOT NULL, client text NOT NULL)")
        await conn.execute(f"INSERT INTO {table} VALUES (now(), 'old', 'library/a', "  # noqa: S608
                           "'sha256:0', 'GET', 'redirect', 307, '10.1.2.3')")
    finally:
        await conn.close()
    client = await gateway(routing=BEHIND_INGRESS, audit=AuditConfig(
        sink="postgres", dsn=pg_dsn, table=table, flush_interval_s=0.05))
    response = await client.get(f"/v2/library/a/blobs/{blob}", allow_redirects=False,
                                headers=forwarded(signer.token("library/a"), "203.0.113.9"))
    assert response.status == 307

    async def two() -> bool:
        return len(await rows(pg_dsn, table)) == 2

    await eventually(two)
    old, new = await rows(pg_dsn, table)
    assert (old["client"], old["peer"]) == ("10.1.2.3", "")
    assert (new["client"], new["peer"]) == ("203.0.113.9", "127.0.0.1")


async def test_one_caller_cannot_crowd_out_the_others_records(pg_dsn: str) -> None:
    """While the database is slow, one caller (here: 30 records, as a URL-API batch or a
    burst of pulls makes) fills only its share of the queue; the others' records still fit."""
    table = "audit_share"
    stats = Stats()
    sink = PostgresAudit(AuditConfig(sink="postgres", dsn=pg_dsn, table=table, queue_size=20,
                                     caller_queue_size=5), stats)
    for user, count in (("mallory", 30), ("carol", 3), ("", 2)):  # "": anonymous callers
        for _ in range(count):
            sink.submit(AuditRecord(at=datetime.now(UTC), user_name=user, repository="a",
                                    digest="sha256:" + "0" * 64, method="GET",
                                    outcome="redirect", status=307, client="127.0.0.1",
                                    peer="127.0.0.1"))
    assert stats.audit["dropped"] == 25  # the writer has not started: nothing left the queue
    sink.start()
    await sink.aclose(grace_s=30)
    written = [r["user_name"] for r in await rows(pg_dsn, table)]
    assert sorted(written) == ["", ""] + ["carol"] * 3 + ["mallory"] * 5
    assert stats.audit["written"] == 10
