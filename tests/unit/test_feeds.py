"""Cloud IP-range feeds: each provider's published format, refresh, the last good copy
kept, IPv6, rules naming regions, and lookups among many prefixes."""

from __future__ import annotations

import ipaddress
import math
import random
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from blobgate.config import FeedConfig, RouteRule, RoutingConfig
from blobgate.errors import ConfigError
from blobgate.ops.metrics import Stats, StatsCollector
from blobgate.routing import feeds
from blobgate.routing.feeds import Feed, FeedError, parse
from blobgate.routing.policy import RoutingPolicy, client_address
from blobgate.routing.prefixes import PrefixSet

from support.feeds import FORMATS, write

EU = {"eu-west-1": ["198.51.100.0/25", "2001:db8:e0::/48"],
      "us-east-1": ["203.0.113.0/24", "2001:db8:a0::/48"]}
REGION = {"aws": "eu-west-1", "gcp": "europe-west1", "azure": "westeurope"}


def regions(provider: str) -> dict[str, list[str]]:
    return {REGION[provider]: EU["eu-west-1"], "other": EU["us-east-1"]}


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_each_published_format_gives_its_regions_ipv4_and_ipv6(provider: str) -> None:
    table = parse(provider, FORMATS[provider](regions(provider)).encode())
    nets = {str(n) for n in table[REGION[provider]]}
    assert nets == {"198.51.100.0/25", "2001:db8:e0::/48"}
    assert {str(n) for n in table["other"]} == {"203.0.113.0/24", "2001:db8:a0::/48"}
    if provider == "azure":  # only AzureCloud.<region> tags count, not service tags
        assert ipaddress.ip_network("192.0.2.128/25") not in table["westeurope"]


@pytest.mark.parametrize(("provider", "document"), [
    ("aws", b"not json"), ("aws", b"{}"), ("aws", b'{"prefixes": []}'),
    ("aws", b'{"prefixes": [{"ip_prefix": "198.51.100.0/33", "region": "x"}]}'),
    ("aws", b'{"prefixes": [{"ip_prefix": 3325256704, "region": "x"}]}'),
    ("gcp", b'{"prefixes": [{"service": "Google Cloud", "scope": "x"}]}'),
    ("azure", b'{"values": [{"name": "AzureCloud.x", "properties": {}}]}'),
    ("azure", b'[1, 2]'),
])
def test_a_broken_document_is_refused(provider: str, document: bytes) -> None:
    with pytest.raises(FeedError):
        parse(provider, document)


def policy_for(path: Path, stats: Stats) -> tuple[RoutingPolicy, Feed]:
    feed = Feed(FeedConfig("aws", str(path)), stats)
    cfg = RoutingConfig(ip_ranges=(feed.cfg,), rules=(
        RouteRule(networks=("aws:eu-west-1",), locations=("eu", "primary"), name="eu"),))
    return RoutingPolicy(cfg, [feed]), feed


def route_of(policy: RoutingPolicy, peer: str) -> tuple[tuple[str, ...], str]:
    request = make_mocked_request("GET", "/v2/a/blobs/x")
    request._transport_peername = (peer, 1234)  # type: ignore[attr-defined]
    route = policy.route(request, "a", client_address(request, policy.trusted))
    return route.copies, route.reason


async def test_refresh_applies_a_new_copy_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = write(tmp_path / "ip-ranges.json", "aws", EU)
    stats = Stats()
    policy, feed = policy_for(path, stats)
    assert route_of(policy, "198.51.100.7") == ((), "default")  # not loaded yet: nobody
    assert await feed.refresh()
    assert route_of(policy, "198.51.100.7") == (("eu",), "eu")
    assert route_of(policy, "2001:db8:e0::5") == (("eu",), "eu")
    assert route_of(policy, "198.51.100.200") == ((), "default")  # the other half of the /24
    assert route_of(policy, "203.0.113.9") == ((), "default")  # us-east-1
    write(path, "aws", {"eu-west-1": ["203.0.113.0/24"]})  # the region moved
    assert await feed.refresh()
    assert route_of(policy, "203.0.113.9") == (("eu",), "eu")
    assert route_of(policy, "198.51.100.7") == ((), "default")
    path.write_text('{"prefixes": [')  # a broken refresh: the last good copy stays
    assert not await feed.refresh()
    assert route_of(policy, "203.0.113.9") == (("eu",), "eu")
    path.unlink()
    assert not await feed.refresh()
    assert route_of(policy, "203.0.113.9") == (("eu",), "eu")
    assert stats.reloads["ip_ranges_aws", "ok"] == 2
    assert stats.reloads["ip_ranges_aws", "error"] == 2
    assert stats.reload_healthy["ip_ranges_aws"] == 0


async def test_a_url_feed_and_its_age(tmp_path: Path) -> None:
    served = {"body": FORMATS["gcp"]({"europe-west1": ["192.0.2.0/24"]}), "status": 200}

    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=served["body"], status=served["status"])

    app = web.Application()
    app.router.add_get("/cloud.json", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        stats = Stats()
        feed = Feed(FeedConfig("gcp", str(server.make_url("/cloud.json"))), stats,
                    clock=lambda: 1000.0)
        metrics = {m.name: m for m in StatsCollector(stats).collect()}
        (sample,) = metrics["blobgate_ip_ranges_age_seconds"].samples
        assert sample.labels == {"provider": "gcp"}
        assert math.isinf(sample.value)  # never read: infinitely stale
        assert await feed.refresh()
        assert {str(n) for n in feed.networks("Europe-West1")} == {"192.0.2.0/24"}
        served["status"] = 503
        assert not await feed.refresh()
        assert {str(n) for n in feed.networks("europe-west1")} == {"192.0.2.0/24"}
        assert stats.feeds_loaded_at["gcp"] == 1000.0  # the age counts from the good read
    finally:
        await server.close()


def test_check_config_reads_feeds_and_refuses_unknown_regions(tmp_path: Path) -> None:
    path = write(tmp_path / "ServiceTags_Public.json", "azure", {"westeurope": ["192.0.2.0/24"]})
    feed = FeedConfig("azure", str(path))

    def routing(selector: str) -> RoutingConfig:
        return RoutingConfig(ip_ranges=(feed,), rules=(RouteRule(networks=(selector,)),))

    feeds.check(routing("azure:westeurope"))
    with pytest.raises(ConfigError, match=r"routing\.rules\[0\]\.networks.*no such region"):
        feeds.check(routing("azure:westeurop"))
    path.write_text("{}")
    with pytest.raises(ConfigError, match=r"routing\.ip_ranges\[0\]\.source"):
        feeds.check(routing("azure:westeurope"))


def test_a_selector_needs_a_feed_of_its_provider() -> None:
    with pytest.raises(ConfigError, match=r"rules\[0\]\.networks.*no feed"):
        RoutingConfig(rules=(RouteRule(networks=("gcp:europe-west1",)),))
    with pytest.raises(ConfigError, match="networks"):
        RouteRule(networks=("oracle:eu-frankfurt-1",))


def test_prefix_set_agrees_with_a_scan_among_ten_thousand_prefixes() -> None:
    rng = random.Random(7)  # noqa: S311 - repeatable test data, not a secret
    nets = [ipaddress.ip_network((rng.getrandbits(32), rng.randint(8, 30)), strict=False)
            for _ in range(10_000)]
    nets += [ipaddress.ip_network((rng.getrandbits(128), rng.randint(20, 64)), strict=False)
             for _ in range(2_000)]
    prefixes = PrefixSet(nets)
    probes = [ipaddress.ip_address(rng.getrandbits(32)) for _ in range(3_000)]
    probes += [n.network_address for n in nets[:500]] + [n.broadcast_address for n in nets[:500]]
    probes += [ipaddress.ip_address(int(n.broadcast_address) + 1) for n in nets[:500]
               if int(n.broadcast_address) < 2**32 - 1]
    probes += [ipaddress.ip_address(rng.getrandbits(128)) for _ in range(500)]
    probes += [n.network_address for n in nets[-200:]]
    spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}  # the scan, on plain integers
    for n in nets:
        spans[n.version].append((int(n.network_address), int(n.broadcast_address)))
    for address in probes:
        value = int(address)
        expected = any(start <= value <= end for start, end in spans[address.version])
        assert (address in prefixes) is expected, address
