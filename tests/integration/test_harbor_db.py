"""Membership from a real PostgreSQL loaded with Harbor's schema (same names as Harbor's
migrations): member, non-member, other project, deleted project, blob being deleted,
unknown digest, database unavailable."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from blobgate.config import MembershipConfig

from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import Signer

SCHEMA = Path(__file__).parents[1] / "support" / "harbor_schema.sql"
Standin = tuple[StandIn, Any]


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class Harbor:
    """Writes projects, artifacts and blobs the way Harbor (2.11 and later) records them."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def project(self, name: str, deleted: bool = False,
                      created: float | None = None) -> int:
        """The live project ``name`` (created now, or at the epoch ``created``);
        ``deleted`` marks it deleted the way Harbor does."""
        project_id: int | None = await self.conn.fetchval(
            "SELECT project_id FROM project WHERE name = $1 AND NOT deleted", name)
        if project_id is None:
            project_id = await self.conn.fetchval(
                "INSERT INTO project (owner_id, name, creation_time) VALUES (1, $1, "
                "COALESCE(to_timestamp($2) AT TIME ZONE 'UTC', CURRENT_TIMESTAMP)) "
                "RETURNING project_id", name, created)
        if deleted:
            await self.delete_project(name)
        return project_id

    async def delete_project(self, name: str) -> None:
        """Harbor's project deletion: renamed ``<name>#<id>`` and flagged, name freed."""
        await self.conn.execute(
            "UPDATE project SET name = name || '#' || project_id, deleted = true "
            "WHERE name = $1 AND NOT deleted", name)

    async def push(self, repository: str, blobs: dict[str, int], status: str = "none") -> None:
        project_id = await self.project(repository.split("/")[0])
        repo_id = await self.conn.fetchval(
            "INSERT INTO repository (name, project_id) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET name = $1 RETURNING repository_id",
            repository, project_id)
        manifest = "sha256:" + hashlib.sha256(os.urandom(16)).hexdigest()
        await self.conn.execute(
            "INSERT INTO artifact (type, media_type, manifest_media_type, artifact_type, "
            "project_id, repository_id, repository_name, digest) "
            "VALUES ('IMAGE', $1, $2, $1, $3, $4, $5, $6)",
            OCI_CONFIG, OCI_MANIFEST, project_id, repo_id, repository, manifest)
        for digest, size in blobs.items():
            blob_id = await self.conn.fetchval(
                "INSERT INTO blob (digest, content_type, size, status) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (digest) DO UPDATE SET status = $4 RETURNING id",
                digest, OCI_LAYER, size, status)
            await self.conn.execute(
                "INSERT INTO artifact_blob (digest_af, digest_blob) VALUES ($1, $2)",
                manifest, digest)
            await self.conn.execute(
                "INSERT INTO project_blob (project_id, blob_id) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING", project_id, blob_id)


@pytest.fixture
async def harbor(pg_dsn: str) -> Any:
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("DROP TABLE IF EXISTS project, repository, blob, project_blob, "
                       "artifact, artifact_blob")  # an older copy of the schema
    await conn.execute(SCHEMA.read_text())
    yield Harbor(conn)
    await conn.execute("TRUNCATE project, repository, blob, project_blob, artifact, artifact_blob")
    await conn.close()


def new_blob(put_blob: Any) -> tuple[str, bytes]:
    data = os.urandom(3000)
    return put_blob(data), data


async def get(client: Any, name: str, digest: str, signer: Signer, method: str = "GET") -> Any:
    headers = {"Authorization": f"Bearer {signer.token(name)}"}
    return await client.request(method, f"/v2/{name}/blobs/{digest}", headers=headers,
                                allow_redirects=False)


async def test_member_is_redirected_without_asking_upstream(
    gateway: GatewayFactory, pg_dsn: str, harbor: Harbor, signer: Signer, put_blob: Any,
    standin: Standin,
) -> None:
    digest, data = new_blob(put_blob)
    await harbor.push("proj/app", {digest: len(data)})
    client = await gateway(membership=MembershipConfig(source="harbor_db", dsn=pg_dsn))
    assert (await get(client, "proj/app", digest, signer)).status == 307
    head = await get(client, "proj/app", digest, signer, "HEAD")
    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(data))  # Harbor's recorded size
    assert standin[0].requests == []  # no upstream round trip at all


@pytest.mark.parametrize("case", ["other-repo", "other-project", "deleted-project", "deleting"])
async def test_non_servable_blobs_are_never_redirected(
    gateway: GatewayFactory, pg_dsn: str, harbor: Harbor, signer: Signer, put_blob: Any,
    standin: Standin, case: str,
) -> None:
    digest, data = new_blob(put_blob)
    if case == "other-repo":
        await harbor.push("proj/other", {digest: len(data)})
    elif case == "other-project":
        await harbor.push("elsewhere/app", {digest: len(data)})
    elif case == "deleted-project":
        await harbor.push("proj/app", {digest: len(data)})
        await harbor.delete_project("proj")
    else:
        await harbor.push("proj/app", {digest: len(data)}, status="deleting")
    client = await gateway(membership=MembershipConfig(source="harbor_db", dsn=pg_dsn))
    response = await get(client, "proj/app", digest, signer)
    assert response.status == 404  # the registry's own answer, passed through
    assert "Location" not in response.headers
    assert standin[0].count("GET", f"/v2/proj/app/blobs/{digest}") == 1


async def test_unknown_digest_passes_through_to_harbor(
    gateway: GatewayFactory, pg_dsn: str, harbor: Harbor, signer: Signer, put_blob: Any,
    standin: Standin,
) -> None:
    digest, data = new_blob(put_blob)
    standin[0].blobs[("cache/app", digest)] = data  # e.g. a proxy-cache project fetching it
    client = await gateway(membership=MembershipConfig(source="harbor_db", dsn=pg_dsn))
    response = await get(client, "cache/app", digest, signer)
    assert response.status == 200
    assert await response.read() == data  # served by Harbor, not denied by blobgate


async def test_database_unavailable_falls_back_to_upstream(
    gateway: GatewayFactory, signer: Signer, put_blob: Any, standin: Standin, scrape: Scrape,
) -> None:
    digest, data = new_blob(put_blob)
    standin[0].blobs[("proj/app", digest)] = data
    down = "postgresql://postgres@127.0.0.1:9/registry"
    client = await gateway(membership=MembershipConfig(source="harbor_db", dsn=down))
    before = await scrape(client)
    assert (await get(client, "proj/app", digest, signer)).status == 307
    after = await scrape(client)
    # One HEAD with the client's token: the registry's verdict on the token (Harbor's rule
    # cannot be read from the database) and the membership answer at once.
    assert standin[0].count("HEAD", f"/v2/proj/app/blobs/{digest}") == 1
    key = 'blobgate_fallbacks_total{reason="database_unavailable"}'
    assert after[key] - before.get(key, 0) == 1
    checks = 'blobgate_membership_checks_total{result="member",source="upstream"}'
    assert after[checks] - before.get(checks, 0) == 1


async def test_readyz_reports_the_database_without_failing(
    gateway: GatewayFactory, pg_dsn: str, harbor: Harbor
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from blobgate.health import create_metrics_app

    for dsn, degraded in ((pg_dsn, False), ("postgresql://postgres@127.0.0.1:9/registry", True)):
        client = await gateway(membership=MembershipConfig(source="harbor_db", dsn=dsn))
        probes = TestClient(TestServer(create_metrics_app(client.server.app)))
        await probes.start_server()
        try:
            response = await probes.get("/readyz")
            body = await response.json()
        finally:
            await probes.close()
        assert response.status == 200  # pulls still work: membership falls back to upstream
        assert body["status"] == "ready"
        assert ("degraded" in body) is degraded
        if degraded:
            assert body["degraded"][0].startswith("membership database unavailable")


# -- Harbor's token rule: iat present, and not before the project's creation ------------------


@pytest.mark.parametrize("case", ["no-iat", "before-creation", "old-project-recreated"])
async def test_tokens_harbor_refuses_are_refused(
    gateway: GatewayFactory, harbor: Harbor, pg_dsn: str, signer: Signer, put_blob: Any,
    standin: Standin, scrape: Scrape, case: str,
) -> None:
    digest, data = new_blob(put_blob)
    now = time.time()
    if case == "old-project-recreated":
        await harbor.project("proj", created=now - 3600)
        token = signer.token("proj/app", iat=int(now - 600))  # for the old project
        await harbor.delete_project("proj")
        await harbor.project("proj", created=now - 60)
    else:
        await harbor.project("proj", created=now - 60)
        claims = {"iat": int(now - 600)} if case == "before-creation" else {}
        token = signer.token("proj/app", **claims)
        if case == "no-iat":
            token = signer.token("proj/app", drop=("iat",))
    await harbor.push("proj/app", {digest: len(data)})
    client = await gateway(membership=MembershipConfig(source="harbor_db", dsn=pg_dsn))
    for method in ("GET", "HEAD", "GET"):
        response = await client.request(method, f"/v2/proj/app/blobs/{digest}",
                                        headers={"Authorization": f"Bearer {token}"},
                                        allow_redirects=False)
        assert response.status != 307
        assert "Location" not in response.headers
        assert response.status == 404  # passed through: the stand-in does not hold it
    api = await client.get(f"/api/v1/blobs/{digest}/url?repository=proj/app",
                           headers={"Authorization": f"Bearer {token}"})
    assert api.status == 401
    metrics = await scrape(client)
    assert metrics['blobgate_requests_total{method="GET",outcome="refused",route="blob"}'] == 2
    assert metrics['blobgate_requests_total{method="HEAD",outcome="refused",route="blob"}'] == 1


async def test_a_token_issued_after_the_projects_creation_is_served(
    gateway: GatewayFactory, harbor: Harbor, pg_dsn: str, signer: Signer, put_blob: Any,
    standin: Standin,
) -> None:
    digest, data = new_blob(put_blob)
    now = time.time()
    await harbor.project("proj", created=now - 3600)
    await harbor.delete_project("proj")
    await harbor.project("proj", created=now - 600)  # re-created ten minutes ago
    await harbor.push("proj/app", {digest: len(data)})
    client = await gateway(membership=MembershipConfig(source="harbor_db", dsn=pg_dsn))
    for iat in (now - 5, now - 600 - 30):  # just now; and within the leeway of creation
        token = signer.token("proj/app", iat=int(iat))
        assert (await get_with(client, token, digest)).status == 307
    assert standin[0].requests == []  # Harbor's own rule, read from its database


async def get_with(client: Any, token: str, digest: str) -> Any:
    return await client.get(f"/v2/proj/app/blobs/{digest}",
                            headers={"Authorization": f"Bearer {token}"},
                            allow_redirects=False)
