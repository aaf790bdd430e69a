"""Where the proxy backend may follow a registry redirect: forbidden addresses, the
allow-list's host and port matching, schemes, and the resolver's filtering."""

from __future__ import annotations

import pytest
from yarl import URL

from blobgate.backends.redirects import (
    ForbiddenAddress,
    PublicResolver,
    RedirectPolicy,
    RedirectRefused,
    forbidden,
)
from blobgate.config import ProxyConfig
from blobgate.ops.metrics import Stats

REGISTRY = URL("https://registry.example:5000/v2/a/blobs/sha256:00")


@pytest.mark.parametrize(
    ("address", "refused"),
    [("169.254.169.254", True), ("127.0.0.1", True), ("127.255.0.9", True),
     ("0.0.0.0", True),  # noqa: S104 - an address to refuse, not one to bind
     ("0.1.2.3", True), ("224.0.0.1", True), ("240.0.0.1", True), ("255.255.255.255", True),
     ("::1", True), ("::", True), ("fe80::1", True), ("fe80::1%eth0", True), ("ff02::1", True),
     ("::ffff:169.254.169.254", True), ("::ffff:127.0.0.1", True),
     ("2002:a9fe:a9fe::1", True), ("::ffff:8.8.8.8", True),
     ("fd00:ec2::254", True), ("100.100.100.200", True),  # AWS (IPv6), Alibaba metadata
     ("10.0.0.1", False), ("172.16.0.1", False), ("192.168.1.1", False), ("fd00::1", False),
     ("52.216.0.1", False), ("2600:1f18::1", False)],
)
def test_forbidden_addresses(address: str, refused: bool) -> None:
    assert forbidden(address) is refused


def policy(*hosts: str, private: bool = False) -> tuple[RedirectPolicy, Stats]:
    stats = Stats()
    cfg = ProxyConfig(redirect_hosts=hosts, allow_private_redirects=private)
    return RedirectPolicy(cfg, REGISTRY.origin(), stats), stats


@pytest.mark.parametrize(
    ("hosts", "location", "followed"),
    [((), "/storage/x", "https://registry.example:5000/storage/x"),
     ((), "https://REGISTRY.example:5000/x", "https://REGISTRY.example:5000/x"),
     (("s3.example",), "https://s3.example/b/k?X-Amz-Signature=s",
      "https://s3.example/b/k?X-Amz-Signature=s"),
     (("s3.example",), "http://s3.example/k", "http://s3.example/k"),
     (("S3.Example",), "//s3.example/k", "https://s3.example/k"),
     (("minio.local:9000",), "http://minio.local:9000/k", "http://minio.local:9000/k"),
     (("[fd00::0001]:9000",), "http://[fd00::1]:9000/k", "http://[fd00::1]:9000/k"),
     (("[fd00::1]:9000",), "http://[FD00:0::1]:9000/k", "http://[FD00:0::1]:9000/k"),
     (("10.1.2.3:9000",), "http://10.1.2.3:9000/k", "http://10.1.2.3:9000/k")],
)
def test_allowed_hosts_are_followed(hosts: tuple[str, ...], location: str, followed: str) -> None:
    allowed, stats = policy(*hosts)
    assert str(allowed.target(REGISTRY, location)) == followed  # as the registry wrote it
    assert not stats.refused_redirects


@pytest.mark.parametrize(
    ("hosts", "location", "reason"),
    [((), "https://s3.example/k", "host"),
     ((), "https://registry.example/k", "host"),  # another port of the registry's host
     (("s3.example",), "https://s3.example:8443/k", "host"),  # a bare host: standard ports
     (("s3.example",), "http://s3.example:443/k", "host"),
     (("s3.example",), "https://s3.example.evil/k", "host"),
     (("minio.local:9000",), "http://minio.local/k", "host"),
     (("s3.example",), "file:///etc/passwd", "scheme"),
     (("s3.example",), "gopher://s3.example/k", "scheme"),
     (("s3.example",), "https://s3.example:99999/k", "location"),
     (("s3.example",), "https://s3.ex%61mple/k", "host"),
     (("xn--bcher-kva.example",), "https://bücher.example/k", "host"),
     (("169.254.169.254",), "http://169.254.169.254/latest/meta-data/", "address"),
     (("[fe80::1]",), "http://[fe80::1]/k", "address"),
     (("127.0.0.1:9000",), "http://127.0.0.1:9000/k", "address"),
     # Forms aiohttp connects to as addresses without the resolver, listed as names
     (("2130706433",), "http://2130706433/k", "address"),
     (("127.1",), "http://127.1/k", "address"),
     (("0177.0.0.1",), "http://0177.0.0.1/k", "address")],
)
def test_other_redirects_are_refused_and_counted(
    hosts: tuple[str, ...], location: str, reason: str
) -> None:
    refusing, stats = policy(*hosts)
    with pytest.raises(RedirectRefused) as refused:
        refusing.target(REGISTRY, location)
    assert refused.value.reason == f"redirect_{reason}"
    assert "Signature" not in str(refused.value)
    assert stats.refused_redirects == {reason: 1}


def test_private_addresses_only_when_allowed() -> None:
    allowed, _ = policy("127.0.0.1:9000", private=True)
    assert str(allowed.target(REGISTRY, "http://127.0.0.1:9000/k")) == "http://127.0.0.1:9000/k"
    with pytest.raises(RedirectRefused):  # the host list still holds
        allowed.target(REGISTRY, "http://127.0.0.1:9001/k")


async def test_the_resolver_keeps_no_loopback_address() -> None:
    resolver = PublicResolver()
    try:
        with pytest.raises(ForbiddenAddress):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
