"""What the chart exposes: the admin port on no Service and admitted from no peer unless
named, metrics on a cluster-internal Service of their own, egress scoped to each
destination with the instance metadata service kept out of every ipBlock, and secret
files (the server's TLS key, the admin token) readable by the pod's group only."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest

from support.helm import Chart, HelmFailed, Rendered, Schemas, load_rendered

LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
METADATA = [ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")]

# Broad destinations an operator might write, that must not open the metadata service.
BROAD: dict[str, Any] = {
    "config": {"upstream": {"url": "https://registry.example.com"},
               "redis": {"url": "redis://10.9.0.4:6379/0"}},
    "redisMac": {"secretName": "blobgate-redis-mac"},
    "networkPolicy": {"egress": {
        "dns": [{"ipBlock": {"cidr": "169.254.20.10/32"}}],  # NodeLocal DNSCache
        "storage": {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]},
        "extra": [{"to": [{"ipBlock": {"cidr": "fc00::/7"}},
                          {"ipBlock": {"cidr": "128.0.0.0/1"}},
                          {"ipBlock": {"cidr": "160.0.0.0/4", "except": ["160.0.0.0/8"]}}],
                   "ports": [{"port": 8443}]}],
    }},
}


@pytest.fixture(scope="module")
def broad(chart: Chart) -> Rendered:
    return chart.render(values=BROAD)


def egress(rendered: Rendered) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = rendered.one("NetworkPolicy")["spec"]["egress"]
    return rules


def reaches(block: dict[str, Any], address: ipaddress.IPv4Address | ipaddress.IPv6Address
            ) -> bool:
    """Whether an ipBlock admits ``address`` (in its cidr and in none of its excepts)."""
    network = ipaddress.ip_network(block["cidr"])
    if address.version != network.version or address not in network:
        return False
    for excepted in block.get("except", []):
        inner = ipaddress.ip_network(excepted)
        assert inner.subnet_of(network), excepted  # what the API server demands
        assert inner != network, excepted
        if address in inner:
            return False
    return True


@pytest.mark.parametrize("scenario", ["default", "harbor", "broad"])
def test_no_egress_reaches_the_instance_metadata_service(
    request: pytest.FixtureRequest, scenario: str, schemas: Schemas
) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    blocks = [peer["ipBlock"] for rule in egress(rendered) for peer in rule["to"]
              if "ipBlock" in peer]
    assert blocks or scenario != "broad"
    for block in blocks:
        for address in METADATA:
            assert not reaches(block, address), (block, address)
        network = ipaddress.ip_network(block["cidr"])
        if network.version == 6 and network.supernet_of(LINK_LOCAL_V6):
            assert "fe80::/10" in block["except"]  # IPv6 link-local stays out too
    schemas.validate(*rendered.objects)


def test_broad_blocks_are_narrowed_not_dropped(broad: Rendered) -> None:
    rules = egress(broad)
    assert rules[0]["to"] == [{"ipBlock": {"cidr": "169.254.20.10/32"}}]  # kept as written
    assert rules[1] == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}],
                        "ports": [{"port": 443, "protocol": "TCP"}]}  # external upstream
    assert rules[2]["to"] == [{"ipBlock": {"cidr": "10.9.0.4/32"}}]  # Redis by address
    assert rules[3]["to"] == [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}},
        {"ipBlock": {"cidr": "::/0", "except": ["fe80::/10", "fd00:ec2::254/128"]}}]
    assert rules[4]["to"] == [
        {"ipBlock": {"cidr": "fc00::/7", "except": ["fd00:ec2::254/128"]}},
        {"ipBlock": {"cidr": "128.0.0.0/1", "except": ["169.254.0.0/16"]}},
        {"ipBlock": {"cidr": "160.0.0.0/4", "except": ["160.0.0.0/8", "169.254.0.0/16"]}}]


@pytest.mark.parametrize("scenario", ["default", "harbor", "broad"])
def test_every_egress_rule_names_its_destination(
    request: pytest.FixtureRequest, scenario: str
) -> None:
    for rule in egress(request.getfixturevalue(scenario)):
        assert rule.get("to"), rule  # a rule without "to" admits every address


@pytest.mark.parametrize(
    ("values", "message"),
    [({"networkPolicy": {"egress": {"extra": [{"to": [{"ipBlock": {"cidr": cidr}}],
                                                "ports": [{"port": 80}]}]}}},
      "reaches the instance metadata endpoint")
     for cidr in ("169.254.0.0/16", "169.254.169.254/32", "fd00:ec2::254/128")]
    + [({"networkPolicy": {"egress": {"dns": []}}}, "networkPolicy.egress.dns is empty"),
       ({"networkPolicy": {"egress": {"s3": {"to": []}}}}, "is now networkPolicy.egress.storage")]
    + [({"networkPolicy": {"egress": egress_values}}, "every rule needs destinations")
       for egress_values in ({"extra": [{"ports": [{"port": 8200}]}]},
                             {"extra": [{"to": [], "ports": [{"port": 80}]}]},
                             {"extra": [{"to": [{"podSelector": {}}]}]},
                             {"storage": {"to": [], "ports": [{"port": 443}]}},
                             {"storage": {"ports": []}})],
    ids=["link-local", "metadata", "metadata-v6", "no-dns", "old-s3-key", "extra-without-to",
         "extra-with-empty-to", "extra-without-ports", "storage-empty-to",
         "storage-empty-ports"],
)
def test_chart_refuses_egress_it_cannot_scope(
    chart: Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmFailed) as failed:
        chart.render(values=values)
    assert message in str(failed.value)


def test_instance_metadata_only_when_asked_for(chart: Chart, schemas: Schemas) -> None:
    values = {"networkPolicy": {"egress": {"instanceMetadata": True}}}
    rendered = chart.render(values=values)
    assert {"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}},
                   {"ipBlock": {"cidr": "fd00:ec2::254/128"}}],
            "ports": [{"port": 80, "protocol": "TCP"}]} in egress(rendered)
    schemas.validate(*rendered.objects)


# --- admin and metrics ports ---------------------------------------------------------------


def ingress_ports(rendered: Rendered) -> list[tuple[set[Any], Any]]:
    """Each ingress rule's ports, and its peers (``None``: every peer)."""
    rules = rendered.one("NetworkPolicy")["spec"]["ingress"]
    assert all(rule.get("ports") for rule in rules)  # a rule without ports opens them all
    return [({p["port"] for p in rule["ports"]}, rule.get("from")) for rule in rules]


def published(rendered: Rendered) -> set[Any]:
    return {p["targetPort"] for s in rendered.all("Service") for p in s["spec"]["ports"]}


@pytest.mark.parametrize("scenario", ["default", "harbor", "broad"])
def test_the_admin_port_is_published_and_admitted_nowhere_by_default(
    request: pytest.FixtureRequest, scenario: str
) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    ports = {p["name"]: p["containerPort"] for p in rendered.container["ports"]}
    assert ports["admin"] == 9103 != ports["metrics"]
    assert not any("admin" in names for names, _ in ingress_ports(rendered))
    assert "admin" not in published(rendered)
    assert load_rendered(rendered, {}).admin.host == "127.0.0.1"


def test_admin_peers_are_admitted_when_named(chart: Chart, schemas: Schemas) -> None:
    peers = [{"podSelector": {"matchLabels": {"app": "ops-console"}}}]
    rendered = chart.render(values={"config": {"admin": {"host": "0.0.0.0"}},  # noqa: S104
                                    "networkPolicy": {"adminFrom": peers}})
    assert ({"admin"}, peers) in ingress_ports(rendered)
    assert "admin" not in published(rendered)
    schemas.validate(*rendered.objects)


def test_metrics_are_published_only_when_wanted_and_never_outside(
    chart: Chart, default: Rendered, schemas: Schemas
) -> None:
    assert published(default) == {"http"}
    values = {"service": {"type": "LoadBalancer", "publishMetrics": True}}
    rendered = chart.render(values=values)
    assert rendered.one("Service", "blobgate")["spec"]["type"] == "LoadBalancer"
    assert {p["targetPort"] for p in rendered.one("Service", "blobgate")["spec"]["ports"]} == {
        "http"}
    metrics = rendered.one("Service", "blobgate-metrics")
    assert metrics["spec"]["type"] == "ClusterIP"
    assert [p["targetPort"] for p in metrics["spec"]["ports"]] == ["metrics"]
    schemas.validate(*rendered.objects)


# --- secret files --------------------------------------------------------------------------


def volume(rendered: Rendered, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(v for v in rendered.pod_spec["volumes"] if v["name"] == name)
    return found


def test_the_server_tls_key_is_not_world_readable(chart: Chart) -> None:
    rendered = chart.render(values={"tls": {"serverSecret": "gw-tls"}})
    assert volume(rendered, "tls-server")["secret"]["defaultMode"] == 0o440
    for each in rendered.pod_spec["volumes"]:
        paths = {item["path"] for item in each.get("secret", {}).get("items", [])}
        if paths & {"tls.key", "credentials", "password", "token"}:
            assert each["secret"]["defaultMode"] == 0o440, each["name"]


@pytest.mark.parametrize(
    ("values", "secret"),
    [({"admin": {"existingSecret": "ops-admin", "tokenKey": "bearer"}}, "ops-admin"),
     ({"admin": {"generateToken": True}}, "blobgate-admin")],
    ids=["existing", "generated"],
)
def test_the_admin_token_is_a_mounted_file(
    chart: Chart, schemas: Schemas, values: dict[str, Any], secret: str
) -> None:
    rendered = chart.render(values=values)
    source = volume(rendered, "admin-token")["secret"]
    assert source["secretName"] == secret
    assert source["defaultMode"] == 0o440
    assert source["items"] == [{"key": values["admin"].get("tokenKey", "token"),
                                "path": "token"}]
    mount = next(m for m in rendered.container["volumeMounts"] if m["name"] == "admin-token")
    assert mount["readOnly"] is True
    assert load_rendered(rendered, {}).admin.token_file == f"{mount['mountPath']}/token"
    created = [s for s in rendered.all("Secret") if s["metadata"]["name"] == secret]
    if values["admin"].get("generateToken"):
        [made] = created
        assert len(base64.b64decode(made["data"]["token"])) == 48
    else:
        assert created == []
    schemas.validate(*rendered.objects)


def test_without_an_admin_token_the_endpoints_stay_disabled(default: Rendered) -> None:
    assert load_rendered(default, {}).admin.token_file is None
    assert "admin-token" not in {v["name"] for v in default.pod_spec["volumes"]}
