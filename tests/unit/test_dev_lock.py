"""``./dev`` installs only the lock, and stops at once when pyproject.toml moved without it.

Each test works on a copy of what ``./dev`` reads (the script, pyproject.toml, uv.lock and
requirements/), with the uv that ``./dev`` bootstrapped for this run, so nothing here
touches the checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.devscript import REPO, dev

FIX = "run ./dev lock"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("dev", "pyproject.toml", "uv.lock", "README.md"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    return tmp_path


def test_the_committed_lock_matches_pyproject(checkout: Path) -> None:
    result = dev(checkout, "check-lock")
    assert result.returncode == 0, result.stderr


def test_a_dependency_added_without_dev_lock_stops_dev_test(checkout: Path) -> None:
    pyproject = checkout / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('"orjson>=3.9",', '"orjson>=3.9",\n    "attrs>=23",', 1))
    assert pyproject.read_text() != text

    result = dev(checkout, "test", "-x")
    assert result.returncode == 1
    assert "uv.lock" in result.stderr
    assert FIX in result.stderr
    assert not (checkout / ".venv").exists()  # stopped before installing anything


def test_a_tightened_version_without_dev_lock_stops_too(checkout: Path) -> None:
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"redis>=5.0"', '"redis>=5.0,<8"', 1))
    result = dev(checkout, "check-lock")
    assert result.returncode == 1
    assert FIX in result.stderr


def test_a_hand_edited_export_is_caught(checkout: Path) -> None:
    runtime = checkout / "requirements" / "runtime.txt"
    lines = runtime.read_text().splitlines()
    pins = [i for i, line in enumerate(lines) if line.startswith("aiohttp==")]
    assert pins
    lines[pins[0]] = "aiohttp==3.10.0 \\"
    runtime.write_text("\n".join(lines) + "\n")
    result = dev(checkout, "check-lock")
    assert result.returncode == 1
    assert "requirements/runtime.txt" in result.stderr
    assert FIX in result.stderr
