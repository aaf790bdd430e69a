"""The SBOM: ``./dev sbom`` and the image's ``/opt/blobgate/sbom.cdx.json`` list exactly the
locked runtime set, each package with its locked version."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from packaging.requirements import Requirement

from support.devscript import dev
from support.image import REPO, Image


def locked_runtime(python: Path) -> dict[str, str]:
    """requirements/runtime.txt's pins whose markers hold for ``python``."""
    lines = [line.rstrip(" \\") for line in
             (REPO / "requirements" / "runtime.txt").read_text().splitlines() if line[:1].isalnum()]
    probe = ("import json, sys\nfrom packaging.requirements import Requirement\n"
             "print(json.dumps([Requirement(r).marker is None or Requirement(r).marker.evaluate()"
             " for r in json.load(sys.stdin)]))")
    result = subprocess.run([str(python), "-c", probe], input=json.dumps(lines),
                            capture_output=True, text=True, check=True, timeout=60)
    pins = (Requirement(line) for line in lines)
    return {pin.name: str(pin.specifier).removeprefix("==")
            for pin, applies in zip(pins, json.loads(result.stdout), strict=True) if applies}


def components(sbom: Path) -> dict[str, str]:
    document = json.loads(sbom.read_text())
    assert document["bomFormat"] == "CycloneDX"
    return {c["name"].lower(): c["version"] for c in document["components"]}


def normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_the_image_sbom_lists_every_locked_runtime_package(image: Image) -> None:
    locked = locked_runtime(image.venv / "bin" / "python")
    listed = {normal(k): v for k, v in components(image.venv / "sbom.cdx.json").items()}
    assert listed == {**locked, "blobgate": listed.get("blobgate", "missing")}
    assert listed["blobgate"] != "missing"


def test_dev_sbom_writes_the_same_components(image: Image, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(
        ".venv*", ".git", "__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache", "tests"))
    result = dev(checkout, "sbom", str(tmp_path / "sbom.json"))
    assert result.returncode == 0, result.stderr
    assert components(tmp_path / "sbom.json") == components(image.venv / "sbom.cdx.json")
