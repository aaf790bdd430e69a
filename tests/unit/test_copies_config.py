"""Configuration of copies and location lists: each mistake named by its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from blobgate.backends.choice import check_copies
from blobgate.config import Config, StorageConfig, settings
from blobgate.errors import ConfigError

BASE = """
storage:
  copies:
    - {name: eu, backend: s3, s3: {bucket: registry-eu, region: eu-west-1}}
    - {name: site-a, backend: azure, azure: {account_name: sitea, container: registry}}
routing:
  ip_ranges: [{provider: aws, source: /feeds/ip-ranges.json}]
  rules:
    - {networks: ["aws:eu-west-1", "192.0.2.0/24"], locations: [eu, site-a, primary]}
"""


def build(text: str) -> Config:
    return settings.build(Config, yaml.safe_load(text), "")


def test_the_documented_shape_loads() -> None:
    cfg = build(BASE)
    assert cfg.storage.locations == ("eu", "site-a", "primary")
    assert cfg.routing.rules[0].action == "redirect"
    assert cfg.storage.of_copy(cfg.storage.copies[1]).azure.account_name == "sitea"


@pytest.mark.parametrize(("change", "key", "why"), [
    ("[eu, onprem]", "routing.rules[0].locations", "not in storage.copies"),
    ("[primary, eu]", "routing.rules[0].locations", "tried last"),
    ("[eu, eu]", "routing.rules[0].locations", "twice"),
])
def test_location_lists(change: str, key: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as caught:
        build(BASE.replace("[eu, site-a, primary]", change))
    assert caught.value.key == key


@pytest.mark.parametrize(("copy", "key", "why"), [
    ("{name: primary}", "storage.copies[0].name", "reserved"),
    ("{name: EU}", "storage.copies[0].name", "lower-case"),
    ("{name: x, backend: proxy}", "storage.copies[0].backend", "'s3', 'azure' or 'gcs'"),
    ("{name: x, backend: gcs}", "storage.copies[0].gcs.bucket", "required with backend gcs"),
])
def test_copy_settings(copy: str, key: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as caught:
        build(f"storage: {{copies: [{copy}]}}")
    assert caught.value.key == key


def test_a_stream_rule_has_no_locations_and_copies_need_a_store() -> None:
    with pytest.raises(ConfigError, match="stream rule") as caught:
        build(BASE.replace("locations: [eu, site-a, primary]", "action: stream, locations: [eu]"))
    assert caught.value.key == "routing.rules[0].locations"
    with pytest.raises(ConfigError) as caught:
        build("storage: {backend: proxy, copies: [{name: eu}]}")
    assert caught.value.key == "storage.copies"
    with pytest.raises(ConfigError, match="unique"):
        build("storage: {copies: [{name: eu}, {name: eu}]}")


def test_a_credentials_file_must_read_as_its_backend_needs(tmp_path: Path) -> None:
    good = tmp_path / "eu"
    good.write_text("[default]\naws_access_key_id = AKIDEU\naws_secret_access_key = s3cr3t\n")
    bad = tmp_path / "bad"
    bad.write_text("aws_access_key_id = AKIDEU\n")  # no section: a secret must not be echoed
    storage = build(f"storage: {{copies: [{{name: eu, credentials_file: {good}}}]}}").storage
    check_copies(storage)
    for path in (bad, tmp_path / "missing"):
        cfg: StorageConfig = build(
            f"storage: {{copies: [{{name: eu, credentials_file: {path}}}]}}").storage
        with pytest.raises(ConfigError) as caught:
            check_copies(cfg)
        assert caught.value.key == "storage.copies[0].credentials_file"
        assert "AKIDEU" not in str(caught.value)
