"""Configuration: defaults, YAML, environment overrides, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blobgate.config import Config, load
from blobgate.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "config" / "blobgate.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blobgate.yaml"
    path.write_text(text)
    return path


def test_example_file_loads_and_matches_the_documented_defaults() -> None:
    assert load(EXAMPLE, {}) == Config()


def test_yaml_values_are_read(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, """
server: {port: 6000, public_hosts: [registry.example.com]}
upstream: {url: "http://registry:5000", timeout_s: 2.5}
storage: {s3: {bucket: b, endpoint_url: "http://minio:9000", path_style: false}}
"""), {})
    assert cfg.server.port == 6000
    assert cfg.server.public_hosts == ("registry.example.com",)
    assert cfg.upstream.timeout_s == 2.5
    assert cfg.storage.s3.bucket == "b"
    assert cfg.storage.s3.path_style is False
    assert cfg.auth == Config().auth


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "BLOBGATE_SERVER_PORT": "7000",
        "BLOBGATE_UPSTREAM_URL": "http://other:80",
        "BLOBGATE_STORAGE_S3_BUCKET": "from-env",
        "BLOBGATE_STORAGE_S3_PATH_STYLE": "false",
        "BLOBGATE_STORAGE_S3_ENDPOINT_URL": "null",
        "BLOBGATE_AUTH_ALGORITHMS": "RS256, ES256",
        "BLOBGATE_TEST_PG_DSN": "not a setting, ignored",
        "HOME": "/root",
    }
    cfg = load(write(tmp_path, "storage: {s3: {endpoint_url: 'http://x:1'}}\n"), env)
    assert cfg.server.port == 7000
    assert cfg.upstream.url == "http://other:80"
    assert cfg.storage.s3.bucket == "from-env"
    assert cfg.storage.s3.path_style is False
    assert cfg.storage.s3.endpoint_url is None
    assert cfg.auth.algorithms == ("RS256", "ES256")


@pytest.mark.parametrize(
    ("text", "env", "key", "why"),
    [
        ("server: {prot: 1}", {}, "server.prot", "unknown setting"),
        ("serve: {}", {}, "serve", "unknown setting"),
        ("server: {port: abc}", {}, "server.port", "must be an integer"),
        ("server: {port: 70000}", {}, "server.port", "between 1 and 65535"),
        ("server: {port: true}", {}, "server.port", "must be an integer"),
        ("server: 5", {}, "server", "must be a mapping"),
        ("upstream: {url: 'harbor-core:80'}", {}, "upstream.url", "http:// or https://"),
        ("storage: {s3: {expires_s: 604801}}", {}, "storage.s3.expires_s", "7-day"),
        ("storage: {s3: {bucket: ''}}", {}, "storage.s3.bucket", "must not be empty"),
        ("storage: {backend: swift}", {}, "storage.backend",
         "must be 's3', 'azure', 'gcs' or 'proxy'"),
        ("storage: {backend: azure, azure: {container: registry}}", {},
         "storage.azure.account_name", "is required with storage.backend azure"),
        ("storage: {backend: azure, azure: {account_name: acct}}", {},
         "storage.azure.container", "is required with storage.backend azure"),
        ("storage: {azure: {account_name: My_Account}}", {}, "storage.azure.account_name",
         "3 to 24 lower-case letters and digits"),
        ("storage: {azure: {container: Reg--x}}", {}, "storage.azure.container",
         "single hyphens"),
        ("storage: {azure: {endpoint_url: 'acct.blob.core.windows.net'}}", {},
         "storage.azure.endpoint_url", "http:// or https://"),
        ("storage: {azure: {expires_s: 30}}", {}, "storage.azure.expires_s",
         "between 60 and 604800"),
        ("storage: {azure: {key: x}}", {}, "storage.azure.key", "unknown setting"),
        ("storage: {backend: gcs}", {}, "storage.gcs.bucket", "is required with storage.backend"),
        ("storage: {gcs: {bucket: Bad_Bucket}}", {}, "storage.gcs.bucket", "lower-case"),
        ("storage: {gcs: {expires_s: 604801}}", {}, "storage.gcs.expires_s", "7-day"),
        ("storage: {backend: gcs, gcs: {bucket: b1c}, cdn: {base_url: 'https://d.example',"
         " key_pair_id: K, private_key_file: /k.pem}}", {}, "storage.cdn.base_url",
         "a CDN needs storage.backend s3"),
        ("", {"BLOBGATE_STORAGE_AZURE_EXPIRES_S": "soon"}, "storage.azure.expires_s",
         "must be an integer"),
        ("storage: {s3: {accelerate: true, endpoint_url: 'http://minio:9000'}}", {},
         "storage.s3.accelerate", "endpoint_url and public_endpoint_url must be null"),
        ("storage: {s3: {accelerate: true}}", {}, "storage.s3.accelerate",
         "needs path_style false"),
        ("storage: {s3: {use_dualstack: true, public_endpoint_url: 'https://s3.example'}}", {},
         "storage.s3.use_dualstack", "chooses an AWS endpoint"),
        ("auth: {algorithms: [HS256]}", {}, "auth.algorithms", "'HS256' is not allowed"),
        ("auth: {algorithms: [none]}", {}, "auth.algorithms", "'none' is not allowed"),
        ("membership: {source: magic}", {}, "membership.source", "must be 'upstream'"),
        ("auth: {refusal_ttl_s: -1}", {}, "auth.refusal_ttl_s", "between 0 and 600"),
        ("api: {credentials_ttl_s: 601}", {}, "api.credentials_ttl_s", "between 0 and 600"),
        ("", {"BLOBGATE_API_CREDENTIALS_TTL_S": "-1"}, "api.credentials_ttl_s",
         "between 0 and 600"),
        ("redis: {url: 'redis://:pw@redis:6379'}", {}, "redis.url", "must not carry a password"),
        ("redis: {url: 'http://redis:6379'}", {}, "redis.url", "redis:// or rediss://"),
        ("redis: {sentinels: [redis]}", {}, "redis.sentinels", "is not host:port"),
        ("", {"BLOBGATE_REDIS_TIMEOUT_MS": "0"}, "redis.timeout_ms", "between 1 and 5000"),
        ("redis: {url: 'redis://redis:6379/5'}", {}, "redis.mac_key_file",
         "is required with redis.url or redis.sentinels"),
        ("redis: {sentinels: ['s:26379'], url: 'redis:///5'}", {}, "redis.mac_key_file",
         "is required"),
        ("redis: {mac_previous_key_file: /k/old}", {}, "redis.mac_previous_key_file",
         "needs mac_key_file"),
        ("redis: {url: 'redis://r/5', mac_key_file: /k/new, mac_previous_key_grace_s: -1}", {},
         "redis.mac_previous_key_grace_s", "must not be negative"),
        ("storage: {missing_ttl_s: 301}", {}, "storage.missing_ttl_s", "between 0 and 300"),
        ("storage: {proxy: {redirect_hosts: ['https://s3.example']}}", {},
         "storage.proxy.redirect_hosts", "is not a host name or host:port"),
        ("storage: {proxy: {redirect_hosts: ['s3.example:99999']}}", {},
         "storage.proxy.redirect_hosts", "'s3.example:99999' is not a host name"),
        ("", {"BLOBGATE_STORAGE_PROXY_REDIRECT_HOSTS": "s3.example/bucket"},
         "storage.proxy.redirect_hosts", "is not a host name or host:port"),
        ("storage: {proxy: {allow_private_redirects: 'yes'}}", {},
         "storage.proxy.allow_private_redirects", "must be true or false"),
        ("upstream: {check_timeout_s: 0}", {}, "upstream.check_timeout_s", "must be positive"),
        ("upstream: {pool_timeout_s: 0}", {}, "upstream.pool_timeout_s", "must be positive"),
        ("", {"BLOBGATE_UPSTREAM_CHECK_MAX_CONNECTIONS": "0"}, "upstream.check_max_connections",
         "must be positive"),
        ("server: {client_body_timeout_s: -1}", {}, "server.client_body_timeout_s",
         "must be positive"),
        ("log: {level: loud}", {}, "log.level", "must be one of"),
        ("server: {event_loop: fast}", {}, "server.event_loop",
         "must be one of asyncio, uvloop"),
        ("", {"BLOBGATE_SERVER_PORT": "eighty"}, "server.port",
         "BLOBGATE_SERVER_PORT must be an integer"),
        ("", {"BLOBGATE_STORAGE_S3_PATH_STYLE": "maybe"}, "storage.s3.path_style",
         "true or false"),
        ("", {"BLOBGATE_SERVER_PROT": "1"}, "BLOBGATE_SERVER_PROT", "unknown setting"),
        ("membership: {dsn_password_file: /run/pw}", {}, "membership.dsn_password_file",
         "needs a dsn"),
        ("membership: {dsn: 'postgresql://u:secret@db/registry', dsn_password_file: /run/pw}",
         {}, "membership.dsn", "keep it in the file only"),
        ("audit: {sink: postgres, dsn_password_file: /run/pw}", {}, "audit.dsn",
         "is required for sink postgres"),
        ("audit: {dsn: 'postgresql://u:pw@db/audit'}",
         {"BLOBGATE_AUDIT_DSN_PASSWORD_FILE": "/run/pw"}, "audit.dsn",
         "keep it in the file only"),
        ("admin: {port: 0}", {}, "admin.port", "between 1 and 65535"),
        ("admin: {port: 9102}", {}, "admin.port", "meets server.port or the metrics ports"),
        ("server: {workers: 2}", {}, "admin.port", "meets server.port or the metrics ports"),
        ("admin: {token_file: ''}", {}, "admin.token_file", "must be a path or null"),
    ],
)
def test_errors_name_the_key_and_why(
    tmp_path: Path, text: str, env: dict[str, str], key: str, why: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), env)
    assert caught.value.key == key
    assert why in str(caught.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml", {})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(write(tmp_path, "server: [unclosed"), {})
    with pytest.raises(ConfigError, match="must be a mapping"):
        load(write(tmp_path, "- a\n- b\n"), {})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blobgate", *args], capture_output=True,
                          text=True, env=env, check=False, timeout=60)


def test_check_config_reports_the_bad_key(tmp_path: Path) -> None:
    result = run_cli("check-config", "--config", str(write(tmp_path, "server: {port: 0}")))
    assert result.returncode == 2
    assert "server.port: must be between 1 and 65535" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [("storage: {backend: azure, azure: {account_name: acct}}",
      "blobgate: configuration error: storage.azure.container: is required with storage.backend "
      "azure"),
     ("storage: {backend: gcs, gcs: {bucket: registry, endpoint_url: storage.example}}",
      "blobgate: configuration error: storage.gcs.endpoint_url: must be an http:// or https:// "
      "URL")],
    ids=["azure", "gcs"],
)
def test_check_config_names_the_storage_key(tmp_path: Path, text: str, message: str) -> None:
    result = run_cli("check-config", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2
    assert message in result.stderr


def test_check_config_needs_readable_certificates(tmp_path: Path) -> None:
    config = write(tmp_path, f"auth: {{certificates: {tmp_path / 'nope.crt'}}}")
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "auth.certificates" in result.stderr


@pytest.mark.parametrize("content", [None, "\n"], ids=["missing", "empty"])
def test_check_config_needs_a_readable_password_file(
    tmp_path: Path, bundle: Path, content: str | None
) -> None:
    password_file = tmp_path / "password"
    if content is not None:
        password_file.write_text(content)
    config = write(tmp_path, f"""
auth: {{certificates: {bundle}}}
membership: {{source: harbor_db, dsn: "postgresql://postgres@db/registry",
              dsn_password_file: {password_file}}}
""")
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert f"membership.dsn_password_file: {'cannot read' if content is None else ''}" in (
        result.stderr)
    password_file.write_text("changeit\n")
    assert run_cli("check-config", "--config", str(config)).returncode == 0


@pytest.mark.parametrize(("current", "previous", "key", "why"), [
    (None, None, "redis.mac_key_file", "cannot read"),
    ("short\n", None, "redis.mac_key_file", "must hold at least 32 bytes"),
    ("k" * 32, "short", "redis.mac_previous_key_file", "must hold at least 32 bytes"),
], ids=["missing", "short", "short previous"])
def test_check_config_needs_usable_mac_key_files(
    tmp_path: Path, bundle: Path, current: str | None, previous: str | None, key: str, why: str,
) -> None:
    if current is not None:
        (tmp_path / "mac").write_text(current)
    if previous is not None:
        (tmp_path / "previous").write_text(previous)
    config = write(tmp_path, f"""
auth: {{certificates: {bundle}}}
redis: {{url: "redis://127.0.0.1:6379/0", mac_key_file: {tmp_path / "mac"},
         mac_previous_key_file: {tmp_path / "previous"}}}
""")
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert f"{key}: " in result.stderr
    assert why in result.stderr
    (tmp_path / "mac").write_text("k" * 32)
    (tmp_path / "previous").unlink(missing_ok=True)  # an absent previous key is no error
    assert run_cli("check-config", "--config", str(config)).returncode == 0


def test_check_config_accepts_a_good_file(tmp_path: Path, bundle: Path) -> None:
    config = write(tmp_path, f"auth: {{certificates: {bundle}}}")
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_check_config_refuses_a_presign_host_under_the_gateway(
    tmp_path: Path, bundle: Path
) -> None:
    text = f"""
server: {{public_hosts: [registry.example.com]}}
auth: {{certificates: {bundle}}}
storage: {{s3: {{public_endpoint_url: "https://s3.registry.example.com"}}}}
"""
    result = run_cli("check-config", "--config", str(write(tmp_path, text)))
    assert result.returncode == 2
    assert "storage.s3.public_endpoint_url" in result.stderr
    assert "s3.registry.example.com" in result.stderr
    allowed = text.replace('"https://s3.registry.example.com"',
                           '"https://s3.registry.example.com", unsafe_allow_gateway_host: true')
    result = run_cli("check-config", "--config", str(write(tmp_path, allowed)))
    assert result.returncode == 0, result.stderr


def test_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout.startswith("blobgate ")


@pytest.mark.parametrize("content", [None, "short\n"], ids=["missing", "too-short"])
def test_check_config_needs_a_usable_admin_token_file(
    tmp_path: Path, bundle: Path, content: str | None
) -> None:
    token_file = tmp_path / "admin-token"
    if content is not None:
        token_file.write_text(content)
    config = write(tmp_path, f"auth: {{certificates: {bundle}}}\n"
                             f"admin: {{token_file: {token_file}}}\n")
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "configuration error: admin.token_file:" in result.stderr
    token_file.write_text("0123456789abcdef\n")
    assert run_cli("check-config", "--config", str(config)).returncode == 0


def test_several_workers_fit_when_the_admin_ports_move(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "server: {workers: 4}\nadmin: {port: 9200}\n"), {})
    assert (cfg.server.workers, cfg.admin.port) == (4, 9200)
    disabled = load(write(tmp_path, "server: {workers: 4}\nadmin: {enabled: false}\n"), {})
    assert disabled.admin.enabled is False
