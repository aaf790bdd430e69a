"""Redirect-or-stream routing: client addresses (and whom to believe), rule matching."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp.test_utils import make_mocked_request

from blobgate.config import RouteRule, RoutingConfig
from blobgate.errors import ConfigError
from blobgate.routing.policy import (
    RoutingPolicy,
    client_address,
    in_networks,
    parse_address,
    parse_networks,
)

NETS = parse_networks(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("addr", "inside"),
    [("10.1.2.3", True), ("11.0.0.1", False), ("fd12::1", True), ("fe80::1", False),
     ("::ffff:10.0.0.1", True), ("::ffff:11.0.0.1", False), ("::10.0.0.1", False),
     ("not-an-address", False), ("10.1.2.3:5000", False), ("", False), (None, False)],
)
def test_in_networks(addr: str | None, inside: bool) -> None:
    assert in_networks(parse_address(addr), NETS) is inside


def test_networks_with_host_bits_are_refused() -> None:
    for bad in ("10.0.0.1/8", "10.0.0.0/33", "example.com"):
        with pytest.raises(ConfigError, match="trusted_proxies"):
            RoutingConfig(trusted_proxies=(bad,))
    assert parse_networks(["192.168.1.7"]) == (ipaddress.ip_network("192.168.1.7/32"),)


def request(peer: str, **headers: str) -> object:
    req = make_mocked_request("GET", "/v2/a/blobs/x", headers=headers)
    req._transport_peername = (peer, 1234)  # type: ignore[attr-defined]
    return req


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("192.0.2.1", "10.9.9.9", "192.0.2.1"),  # untrusted peer: its XFF is ignored
        ("127.0.0.1", "10.9.9.9", "10.9.9.9"),  # trusted proxy: the client behind it
        ("127.0.0.1", "10.9.9.9, 127.0.0.2", "10.9.9.9"),  # two trusted hops
        ("127.0.0.1", "203.0.113.5, 10.9.9.9", "10.9.9.9"),  # spoofed left part not reached
        ("127.0.0.1", "garbage", None),
    ],
)
def test_client_address_believes_only_trusted_proxies(
    peer: str, xff: str, expected: str | None
) -> None:
    trusted = parse_networks(["127.0.0.0/8"])
    address = client_address(request(peer, **{"X-Forwarded-For": xff}), trusted)  # type: ignore[arg-type]
    assert address == (None if expected is None else ipaddress.ip_address(expected))


def test_first_matching_rule_decides() -> None:
    policy = RoutingPolicy(RoutingConfig(
        default="redirect",
        trusted_proxies=("127.0.0.0/8",),
        rules=(
            RouteRule(action="stream", networks=("10.0.0.0/8",), repositories=("internal/*",)),
            RouteRule(action="stream", user_agents=(r"^containerd/1\.6",)),
            RouteRule(action="redirect", repositories=("internal/public",)),
        ),
    ))
    def decide(name: str, peer: str = "192.0.2.1", **headers: str) -> str:
        req = request(peer, **headers)
        return policy.route(req, name, client_address(req, policy.trusted)).action  # type: ignore[arg-type]

    assert decide("internal/x") == "redirect"  # network condition not met
    assert decide("internal/x", "127.0.0.1", **{"X-Forwarded-For": "10.1.1.1"}) == "stream"
    assert decide("other/x", "127.0.0.1", **{"X-Forwarded-For": "10.1.1.1"}) == "redirect"
    assert decide("other/x", **{"User-Agent": "containerd/1.6.20"}) == "stream"
    assert decide("other/x", **{"User-Agent": "containerd/1.7.0"}) == "redirect"


def test_rules_need_a_condition_and_valid_patterns() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        RouteRule(action="stream")
    with pytest.raises(ConfigError, match="user_agents"):
        RouteRule(action="stream", user_agents=("(",))
    with pytest.raises(ConfigError, match="action"):
        RouteRule(action="teleport", repositories=("a",))
