"""Fixtures of the chart tests: a Helm binary, the chart, its two reference renderings
(defaults, and the Harbor example) rendered once per session, and the schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.helm import HARBOR_VALUES, Chart, Rendered, Schemas, installed


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """A Helm 3 binary, installed on first use."""
    return installed(Path(__file__).with_name("install-helm.sh"))


@pytest.fixture(scope="session")
def chart(helm_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Chart:
    return Chart(helm_bin, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def default(chart: Chart) -> Rendered:
    return chart.render()


@pytest.fixture(scope="session")
def harbor(chart: Chart) -> Rendered:
    return chart.render([HARBOR_VALUES], namespace="harbor")


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    """Offline schema validation, with the CRD validators installed on first use."""
    return Schemas(installed(Path(__file__).with_name("install-crd-schemas.sh")))
