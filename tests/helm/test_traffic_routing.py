"""Routing registry traffic to blobgate the ways people do in 2026: a Gateway API
HTTPRoute, Harbor behind its own nginx, and Ingress controllers other than nginx.

Each example values file is rendered and schema-validated. The HTTPRoute example is
also run through the Gateway API's match precedence next to the route Harbor's chart
renders (``expose.type: route``), to show which backend each kind of request reaches.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
import yaml

from support.helm import CHART, Chart, HelmFailed, InvalidObject, Rendered, Schemas

GATEWAY_VALUES = CHART / "ci" / "gateway-values.yaml"
HARBOR_NGINX_VALUES = CHART / "ci" / "harbor-nginx-values.yaml"
PARENT = {"name": "shared", "namespace": "gateway-system", "sectionName": "https"}
DIGEST = "sha256:" + "7e" * 32

# The rules of the HTTPRoute Harbor's chart renders for expose.type: route
# (templates/gateway-apis/route.yaml in goharbor/harbor-helm).
HARBOR_ROUTE_RULES: list[dict[str, Any]] = [
    {"matches": [{"path": {"type": "PathPrefix", "value": v}}
                 for v in ("/api/", "/service/", "/v2/", "/c/")],
     "backendRefs": [{"name": "harbor-core", "port": 80}]},
    {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
     "backendRefs": [{"name": "harbor-portal", "port": 80}]},
]


@pytest.fixture(scope="module")
def gateway(chart: Chart) -> Rendered:
    return chart.render([GATEWAY_VALUES], namespace="harbor")


@pytest.fixture(scope="module")
def harbor_nginx(chart: Chart) -> Rendered:
    return chart.render([HARBOR_NGINX_VALUES], namespace="harbor")


@pytest.mark.parametrize(("scenario", "route_kind"),
                         [("gateway", "HTTPRoute"), ("harbor_nginx", "Ingress")])
def test_routing_examples_are_valid(
    request: pytest.FixtureRequest, schemas: Schemas, scenario: str, route_kind: str
) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    schemas.validate(*rendered.objects)
    assert len(rendered.all(route_kind)) == 1
    assert not rendered.all("HTTPRoute" if route_kind == "Ingress" else "Ingress")


def test_http_route_sends_to_blobgates_service(gateway: Rendered) -> None:
    route = gateway.one("HTTPRoute")
    service = gateway.one("Service")
    assert route["metadata"]["namespace"] == "harbor"
    assert route["spec"]["parentRefs"] == [PARENT]
    assert route["spec"]["hostnames"] == ["harbor.example.com"]
    [rule] = route["spec"]["rules"]
    http_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": http_port}]
    assert {m["path"]["type"] for m in rule["matches"]} == {"PathPrefix"}


def test_default_matches_are_portable_path_prefixes(chart: Chart, schemas: Schemas) -> None:
    rendered = chart.render(values={"httpRoute": {
        "enabled": True, "parentRefs": [PARENT], "timeouts": {"request": "900s"}}})
    [rule] = rendered.one("HTTPRoute")["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2/"}},
                               {"path": {"type": "PathPrefix", "value": "/api/v2.0/blobs/"}}]
    assert rule["timeouts"] == {"request": "900s"}
    schemas.validate(*rendered.objects)


def test_schema_rejects_a_route_no_implementation_would_accept(
    gateway: Rendered, schemas: Schemas
) -> None:
    route = yaml.safe_load(yaml.safe_dump(gateway.one("HTTPRoute")))
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Glob"
    with pytest.raises(InvalidObject, match="type must be equal to one of the allowed values"):
        schemas.validate(route)


def test_http_route_needs_a_gateway(chart: Chart) -> None:
    with pytest.raises(HelmFailed, match=r"httpRoute\.enabled needs httpRoute\.parentRefs"):
        chart.render(values={"httpRoute": {"enabled": True}})


# --- the Gateway API's precedence --------------------------------------------------------


class Candidate(NamedTuple):
    """One match of one rule, with what ranks it (higher wins)."""

    rank: tuple[int, int, int, int, int]
    match: dict[str, Any]
    backend: str


def _path_matches(match: dict[str, Any], path: str) -> bool:
    spec = match.get("path", {"type": "PathPrefix", "value": "/"})
    if spec["type"] == "Exact":
        return bool(path == spec["value"])
    prefix = spec["value"].rstrip("/")  # PathPrefix matches whole path elements
    return path == prefix or path.startswith(prefix + "/")


def backend_for(routes: list[list[dict[str, Any]]], method: str, path: str) -> str:
    """The backend a conformant implementation picks for ``method path`` among routes
    (oldest first) on one listener and host name: an Exact path over a prefix, then the
    longest prefix, a method match, the most header matches, the oldest route."""
    candidates = []
    for age, rules in enumerate(routes):
        for rule in rules:
            for match in rule["matches"]:
                if not _path_matches(match, path) or match.get("method", method) != method:
                    continue
                path_spec = match.get("path", {"type": "PathPrefix", "value": "/"})
                rank = (int(path_spec["type"] == "Exact"), len(path_spec["value"]),
                        int("method" in match), len(match.get("headers", [])), -age)
                candidates.append(Candidate(rank, match, rule["backendRefs"][0]["name"]))
    return max(candidates, key=lambda c: c.rank).backend


REQUESTS = [
    ("GET", f"/v2/library/alpine/blobs/{DIGEST}", "blobgate"),
    ("HEAD", f"/v2/team/tools/base/blobs/{DIGEST}", "blobgate"),
    ("GET", "/v2/library/alpine/manifests/3.20", "blobgate"),
    ("DELETE", f"/v2/library/alpine/manifests/{DIGEST}", "blobgate"),
    ("GET", f"/api/v2.0/blobs/{DIGEST}/url", "blobgate"),
    ("POST", "/v2/library/alpine/blobs/uploads/", "harbor-core"),
    ("PATCH", "/v2/library/alpine/blobs/uploads/5b1f0c3e", "harbor-core"),
    ("PUT", "/v2/library/alpine/manifests/3.20", "harbor-core"),
    ("GET", "/api/v2.0/projects", "harbor-core"),
    ("GET", "/service/token", "harbor-core"),
    ("GET", "/", "harbor-portal"),
]


@pytest.mark.parametrize(("method", "path", "backend"), REQUESTS)
def test_next_to_harbors_route_pulls_reach_blobgate(
    gateway: Rendered, method: str, path: str, backend: str
) -> None:
    ours = gateway.one("HTTPRoute")["spec"]["rules"]
    assert backend_for([HARBOR_ROUTE_RULES, ours], method, path) == backend


def test_plain_prefixes_lose_the_tie_with_harbors_older_route() -> None:
    defaults = [{"matches": [{"path": {"type": "PathPrefix", "value": "/v2/"}}],
                 "backendRefs": [{"name": "blobgate", "port": 5080}]}]
    path = f"/v2/library/alpine/blobs/{DIGEST}"
    assert backend_for([HARBOR_ROUTE_RULES, defaults], "GET", path) == "harbor-core"
    assert backend_for([defaults], "GET", path) == "blobgate"


# --- Harbor behind its own nginx, and other Ingress classes -----------------------------


def test_blobgate_fronts_harbors_nginx(harbor_nginx: Rendered) -> None:
    cfg = yaml.safe_load(harbor_nginx.config_text)
    assert cfg["upstream"]["url"] == "http://harbor.harbor.svc:80"
    volumes = {v["name"]: v for v in harbor_nginx.pod_spec["volumes"]}
    assert volumes["token"]["secret"]["secretName"] == "harbor-core"
    upstream_rule = harbor_nginx.one("NetworkPolicy")["spec"]["egress"][1]
    assert upstream_rule == {
        "to": [{"podSelector": {"matchLabels": {"release": "harbor", "component": "nginx"}}}],
        "ports": [{"port": 8080, "protocol": "TCP"}]}
    [rule] = harbor_nginx.one("Ingress")["spec"]["rules"]
    assert [p["path"] for p in rule["http"]["paths"]] == ["/"]  # portal and API included


@pytest.mark.parametrize("class_name", ["traefik", "haproxy", "alb"])
def test_any_ingress_class_without_controller_annotations(
    chart: Chart, schemas: Schemas, class_name: str
) -> None:
    rendered = chart.render(values={"ingress": {"enabled": True, "className": class_name}})
    ingress = rendered.one("Ingress")
    assert ingress["spec"]["ingressClassName"] == class_name
    assert "annotations" not in ingress["metadata"]
    schemas.validate(ingress)


def test_harbor_nginx_example_uses_no_nginx_annotations(harbor_nginx: Rendered) -> None:
    ingress = harbor_nginx.one("Ingress")
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert "annotations" not in ingress["metadata"]


def test_notes_show_the_route(chart: Chart) -> None:
    notes = chart.notes([GATEWAY_VALUES], namespace="harbor")
    assert "HTTPRoute blobgate sends registry traffic for harbor.example.com to blobgate" in notes
    assert "kubectl -n harbor get httproute blobgate" in notes
