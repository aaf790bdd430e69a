"""Token certificates rotate on disk: the new ones are trusted, tokens of the old ones are
not (even if cached), and a garbage replacement keeps the current keys and raises the
alert metric."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from blobgate.config import AuthConfig

from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import ISSUER, SERVICE, Signer, pem


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_rotation_and_bad_replacement(
    gateway: GatewayFactory, tmp_path: Path, put_blob: Any, standin: tuple[StandIn, Any],
    scrape: Scrape,
) -> None:
    data = os.urandom(1000)
    digest = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data
    old, new = Signer(name="old"), Signer(name="new")
    bundle = tmp_path / "token.crt"
    bundle.write_bytes(pem(old.cert))
    client = await gateway(auth=AuthConfig(issuer=ISSUER, service=SERVICE,
                                           certificates=str(bundle), reload_interval_s=0.02))
    path = f"/v2/library/a/blobs/{digest}"

    async def status(signer: Signer) -> int:
        headers = {"Authorization": f"Bearer {signer.token('library/a')}"}
        response = await client.get(path, headers=headers, allow_redirects=False)
        return response.status

    old_token = {"Authorization": f"Bearer {old.token('library/a')}"}
    assert (await client.get(path, headers=old_token, allow_redirects=False)).status == 307
    assert await status(new) != 307

    bundle.write_bytes(pem(new.cert))

    async def new_trusted() -> bool:
        return await status(new) == 307

    await eventually(new_trusted)
    # The old token was verified and cached before: it must not survive the rotation.
    assert (await client.get(path, headers=old_token, allow_redirects=False)).status != 307

    bundle.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")

    async def alerted() -> bool:
        metrics = await scrape(client)
        return metrics.get('blobgate_reload_healthy{file="token_certificates"}') == 0

    await eventually(alerted)
    assert await status(new) == 307  # old (good) keys kept
    metrics = await scrape(client)
    assert metrics['blobgate_reloads_total{file="token_certificates",result="error"}'] == 1
    assert metrics['blobgate_reloads_total{file="token_certificates",result="ok"}'] == 1
