"""Where ``storage.backend: proxy`` follows the registry's storage redirect: a stand-in
registry redirects to cloud metadata, loopback (by address, as ``[::1]`` and by a name
resolving to it), other schemes and a storage that redirects again. blobgate never
connects there (loopback listeners record every connection; connections leaving the
machine are stopped and recorded by the test), the client gets the registry's own
answer, and each refusal is counted by reason. An allowed storage still streams."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from blobgate.config import ProxyConfig, StorageConfig

from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]
NAME = "library/a"
METADATA = "169.254.169.254"


class Trap:
    """Listeners on 127.0.0.1 and [::1] at one port that count the connections made."""

    def __init__(self) -> None:
        self.connections = 0
        self.servers: list[asyncio.Server] = []

    async def start(self) -> int:
        first = await asyncio.start_server(self._seen, "127.0.0.1", 0)
        port: int = first.sockets[0].getsockname()[1]
        second = await asyncio.start_server(self._seen, "::1", port, family=socket.AF_INET6)
        self.servers = [first, second]
        return port

    async def _seen(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def trap() -> AsyncIterator[tuple[Trap, int]]:
    listener = Trap()
    port = await listener.start()
    yield listener, port
    await listener.close()


@pytest.fixture
async def outside(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Addresses off loopback the test's connections were headed for; none is reached."""
    loop = asyncio.get_running_loop()
    headed: list[Any] = []
    connect = loop.sock_connect

    async def guarded(sock: socket.socket, address: Any) -> None:
        if address[0] not in ("127.0.0.1", "::1"):
            headed.append(address)
            raise OSError(f"the test stopped a connection to {address[0]}")
        await connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", guarded)
    return headed


@pytest.fixture
def blob(standin: Standin) -> tuple[str, bytes]:
    data = os.urandom(200_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    standin[0].blobs[(NAME, digest)] = data
    standin[0].get_redirects = True
    return digest, data


def pull(signer: Signer) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token(NAME)}"}


def proxy(*hosts: str, private: bool = False) -> StorageConfig:
    return StorageConfig(backend="proxy", proxy=ProxyConfig(
        redirect_hosts=hosts, allow_private_redirects=private))


Case = Callable[[int], tuple[str, StorageConfig, str]]  # trap port -> Location, config, reason
CASES: dict[str, Case] = {
    "metadata": lambda port: (f"http://{METADATA}/latest/meta-data/{{digest}}",
                              proxy(METADATA), "address"),
    "metadata-ipv4-mapped": lambda port: (f"http://[::ffff:{METADATA}]/{{digest}}",
                                          proxy(f"[::ffff:{METADATA}]"), "address"),
    "loopback-not-listed": lambda port: (f"http://127.0.0.1:{port}/{{digest}}", proxy(),
                                         "host"),
    "loopback-listed": lambda port: (f"http://127.0.0.1:{port}/{{digest}}",
                                     proxy(f"127.0.0.1:{port}"), "address"),
    "ipv6-loopback": lambda port: (f"http://[::1]:{port}/{{digest}}", proxy(f"[::1]:{port}"),
                                   "address"),
    "name-resolving-to-loopback": lambda port: (f"http://localhost:{port}/{{digest}}",
                                                proxy(f"localhost:{port}"), "address"),
    "listed-host-other-port": lambda port: (f"http://localhost:{port}/{{digest}}",
                                            proxy(f"localhost:{port + 1}", private=True),
                                            "host"),
    "file-scheme": lambda port: ("file:///etc/passwd", proxy(private=True), "scheme"),
    "other-scheme": lambda port: (f"ftp://127.0.0.1:{port}/{{digest}}",
                                  proxy(f"127.0.0.1:{port}", private=True), "scheme"),
}


# A GET meets the redirect when it fetches the bytes (its HEAD is answered with 200); a
# HEAD when it learns the size. A HEAD redirected to a URL without a host is no proof of
# membership, so that one never reaches the backend.
@pytest.mark.parametrize(("case", "method"), [
    (case, method) for case in CASES for method in ("GET", "HEAD")
    if (case, method) != ("file-scheme", "HEAD")])
async def test_a_refused_redirect_is_never_followed_and_the_registry_answers(
    gateway: GatewayFactory, standin: Standin, signer: Signer, blob: tuple[str, bytes],
    trap: tuple[Trap, int], outside: list[Any], scrape: Scrape, case: str, method: str,
) -> None:
    listener, port = trap
    location, storage, reason = CASES[case](port)
    standin[0].redirect_to = location
    standin[0].head_redirects = method == "HEAD"
    client = await gateway(storage=storage)
    key = f'blobgate_refused_redirects_total{{reason="{reason}"}}'
    before = (await scrape(client)).get(key, 0)
    response = await client.request(method, f"/v2/{NAME}/blobs/{blob[0]}",
                                    headers=pull(signer), allow_redirects=False)
    assert response.status == 307  # the registry's own answer, passed through
    assert URL(response.headers["Location"]) == URL(location.format(digest=blob[0]))
    assert listener.connections == 0
    assert outside == []
    assert (await scrape(client))[key] - before == 1


async def test_only_one_hop_is_followed(
    gateway: GatewayFactory, standin: Standin, signer: Signer, blob: tuple[str, bytes],
    trap: tuple[Trap, int],
) -> None:
    listener, port = trap

    async def again(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{port}/second-hop")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", again)
    storage = TestServer(app, host="127.0.0.1")
    await storage.start_server()
    try:
        standin[0].redirect_to = f"http://127.0.0.1:{storage.port}/{{digest}}"
        client = await gateway(storage=proxy(f"127.0.0.1:{storage.port}",
                                             f"127.0.0.1:{port}", private=True))
        response = await client.get(f"/v2/{NAME}/blobs/{blob[0]}", headers=pull(signer),
                                    allow_redirects=False)
    finally:
        await storage.close()
    assert response.status == 307
    assert response.headers["Location"] == standin[0].redirect_to.format(digest=blob[0])
    assert listener.connections == 0


async def test_the_registrys_own_host_is_followed_by_default(
    gateway: GatewayFactory, standin: Standin, signer: Signer, blob: tuple[str, bytes],
    outside: list[Any],
) -> None:
    standin[0].redirect_to = "/storage/{digest}"  # on the registry's own host and port
    standin[0].head_redirects = False  # such a redirect is no proof of membership
    client = await gateway(storage=proxy(private=True))  # it is on loopback here
    response = await client.get(f"/v2/{NAME}/blobs/{blob[0]}", headers=pull(signer),
                                allow_redirects=False)
    assert response.status == 200
    assert await response.read() == blob[1]
    assert standin[0].storage_auth == [None]  # followed, without the token
    assert outside == []
