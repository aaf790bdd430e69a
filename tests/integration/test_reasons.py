"""Every outcome/reason pair a blob or URL-API answer can carry, each made to happen
against a real blobgate (moto S3 over HTTP, the stand-in registry, real Redis for the
shared tier), and found in the request's line.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest

from blobgate import decision
from blobgate.config import (
    RedisConfig,
    RouteRule,
    RoutingConfig,
    S3Config,
    StorageConfig,
    UpstreamConfig,
)
from blobgate.decision import Decision
from blobgate.devstack.procs import free_port

from support.gateway import BUCKET, GatewayFactory
from support.lines import Lines
from support.standin import StandIn, storage_on_loopback
from support.tokens import Signer

REPO = "library/a"


class World:
    """What a case needs: the gateway factory, a signer, the stand-in, a stored blob."""

    def __init__(self, gateway: GatewayFactory, signer: Signer, standin: tuple[StandIn, Any],
                 put_blob: Callable[[bytes], str], redis: RedisConfig, s3_url: str) -> None:
        self.gateway, self.signer, self.standin = gateway, signer, standin
        self.registry = standin[0]
        self.put_blob, self.redis, self.s3_url = put_blob, redis, s3_url
        self.clients: list[Any] = []

    async def client(self, **parts: Any) -> Any:
        """A gateway, closed by ``close`` (its lines are then all written)."""
        client = await self.gateway(**parts)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()

    def blob(self, stored: bool = True) -> str:
        """A blob of ``library/a`` in the registry (and in S3 when ``stored``)."""
        data = os.urandom(2000)
        digest = self.put_blob(data) if stored else "sha256:" + os.urandom(32).hex()
        self.registry.blobs[(REPO, digest)] = data
        return digest

    def auth(self, repository: str = REPO) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.signer.token(repository)}"}

    async def get(self, digest: str, method: str = "GET", headers: dict[str, str] | None = None,
                  **parts: Any) -> None:
        client = await self.client(**parts)
        response = await client.request(method, f"/v2/{REPO}/blobs/{digest}",
                                        headers=self.auth() if headers is None else headers,
                                        allow_redirects=False)
        await response.read()  # the whole answer: its line is then written

    async def url(self, digest: str, headers: dict[str, str] | None = None) -> None:
        """Ask the URL API for ``digest`` of ``library/a``."""
        client = await self.client()
        response = await client.get(f"/api/v1/blobs/{digest}/url",
                                    params={"repository": REPO},
                                    headers=self.auth() if headers is None else headers)
        await response.read()


Case = Callable[[World], Awaitable[None]]


async def no_token(w: World) -> None:
    await w.get(w.blob(), headers={})


async def invalid_token(w: World) -> None:
    await w.get(w.blob(), headers={"Authorization": "Bearer not.a.token"})


async def no_grant(w: World) -> None:
    await w.get(w.blob(), headers=w.auth("library/other"))


async def refused(w: World) -> None:
    headers = w.auth()
    w.registry.refused.add(headers["Authorization"].split()[1])
    await w.get(w.blob(), headers=headers)


async def not_member(w: World) -> None:
    await w.get("sha256:" + "0" * 64)


async def check_failed(w: World) -> None:
    w.registry.head_delay_s = 1.0  # the check gives up first; the GET itself is relayed
    upstream = UpstreamConfig(url=str(w.standin[1].make_url("")), check_timeout_s=0.2)
    await w.get(w.blob(), upstream=upstream)


async def not_in_storage(w: World) -> None:
    await w.get(w.blob(stored=False))


async def storage_unchecked(w: World) -> None:
    s3 = S3Config(bucket=BUCKET, endpoint_url=f"http://localhost:{free_port()}")
    await w.get(w.blob(), storage=StorageConfig(s3=s3))


async def size_unknown(w: World) -> None:  # streamed; the registry's HEAD gave no size
    await w.get(w.blob(stored=False), routing=RoutingConfig(default="stream"))


async def stream_failed(w: World) -> None:  # the size known, the bytes not in storage
    w.registry.head_redirects = False
    await w.get(w.blob(stored=False), routing=RoutingConfig(default="stream"))


async def signed(w: World) -> None:
    await w.get(w.blob())


async def memory(w: World) -> None:
    digest = w.blob()
    client = await w.client()
    for _ in range(2):
        response = await client.get(f"/v2/{REPO}/blobs/{digest}", headers=w.auth(),
                                    allow_redirects=False)
        await response.read()


async def redis(w: World) -> None:  # one replica signs, the other finds it in Redis
    digest = w.blob()
    await w.get(digest, redis=w.redis)
    await w.get(digest, redis=w.redis)


async def policy_default(w: World) -> None:
    await w.get(w.blob(), routing=RoutingConfig(default="stream"))


async def policy_rule(w: World) -> None:
    rules = (RouteRule("redirect", repositories=("other/*",)),
             RouteRule("stream", user_agents=("^old-docker/",)))
    await w.get(w.blob(), headers={**w.auth(), "User-Agent": "old-docker/20.10"},
                routing=RoutingConfig(rules=rules))


async def gateway_host(w: World) -> None:  # the client reached blobgate by S3's host name
    await w.get(w.blob(), headers={**w.auth(), "Host": urlsplit(w.s3_url).netloc})


async def no_presigner(w: World) -> None:
    await w.get(w.blob(), storage=StorageConfig(backend="proxy",
                                                proxy=storage_on_loopback(w.standin)))


async def head(w: World) -> None:
    await w.get(w.blob(), method="HEAD")


async def url(w: World) -> None:
    await w.url(w.blob())


async def url_not_member(w: World) -> None:
    await w.url(f"sha256:{'0' * 64}")


async def url_not_in_storage(w: World) -> None:
    await w.url(w.blob(stored=False))


async def url_refused(w: World) -> None:
    headers = w.auth()
    w.registry.refused.add(headers["Authorization"].split()[1])
    await w.url(w.blob(), headers)


async def digest_invalid(w: World) -> None:
    await w.get("sha256:short")


CASES: dict[tuple[Decision, int], Case] = {
    (decision.NO_TOKEN, 401): no_token,
    (decision.INVALID_TOKEN, 200): invalid_token,  # well-formed: the stand-in serves it
    (decision.NO_GRANT, 200): no_grant,  # the stand-in serves any well-formed token
    (decision.REFUSED, 401): refused,
    (decision.NOT_MEMBER, 404): not_member,
    (decision.CHECK_FAILED, 200): check_failed,
    (decision.NOT_IN_STORAGE, 200): not_in_storage,
    (decision.STORAGE_UNCHECKED, 200): storage_unchecked,
    (decision.SIZE_UNKNOWN, 200): size_unknown,
    (decision.STREAM_FAILED, 200): stream_failed,
    (decision.REDIRECTS[decision.SIGNED], 307): signed,
    (decision.REDIRECTS[decision.MEMORY], 307): memory,
    (decision.REDIRECTS[decision.REDIS], 307): redis,
    (decision.policy("default"), 200): policy_default,
    (decision.policy("rules[1]"), 200): policy_rule,
    (decision.GATEWAY_HOST, 200): gateway_host,
    (decision.NO_PRESIGNER, 200): no_presigner,
    (decision.LOCAL_HEAD, 200): head,
    (decision.URL_SIGNED, 200): url,
    (Decision("error", "not_member"), 404): url_not_member,
    (Decision("error", "not_in_storage"), 404): url_not_in_storage,
    (Decision("error", "refused"), 401): url_refused,
    (Decision("invalid", "digest_invalid"), 400): digest_invalid,
}


def test_the_table_names_every_decision_but_one() -> None:
    """Each constant of ``decision`` is in the table; ``presign_failed`` (a signer that
    fails on a stored, admitted blob) has no real S3 way to happen here."""
    constants = {value for value in vars(decision).values() if isinstance(value, Decision)}
    constants |= set(decision.REDIRECTS.values())
    covered = {decided for decided, _ in CASES}
    assert constants - covered == {decision.PRESIGN_FAILED}


@pytest.mark.parametrize(("decided", "status"), list(CASES),
                         ids=[f"{d.outcome}-{d.reason}" for d, _ in CASES])
async def test_the_line_carries_the_outcome_and_its_reason(
    decided: Decision, status: int, gateway: GatewayFactory, signer: Signer,
    standin: tuple[StandIn, Any], put_blob: Callable[[bytes], str], shared_redis: RedisConfig,
    s3_server: Any, lines: Lines, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")  # the access and audit lines on
    world = World(gateway, signer, standin, put_blob, replace(shared_redis),
                  s3_server.endpoint_url)
    await CASES[decided, status](world)
    await world.close()
    requests = [e for e in lines.entries() if "path" in e]
    last = requests[-1]
    assert (last["outcome"], last["reason"], last["status"]) == (*decided, status)
